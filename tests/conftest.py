"""Shared set-up for the unit tests (the nbval notebooks under runs/ do not use it).

* Under pytest-xdist the cores are shared between workers: each worker's torch, and
  the notebook kernels it starts (via OMP_NUM_THREADS), get an equal share.
* Hypothesis: no per-example deadline (timings on a loaded 2-core machine vary).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("mtlkit", deadline=None)
settings.load_profile("mtlkit")


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)
