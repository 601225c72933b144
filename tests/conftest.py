"""Shared set-up for the unit tests and the nbval notebooks of the same pytest session.

* Under pytest-xdist the cores are shared between workers: each worker's torch, and
  the notebook kernels it starts (via OMP_NUM_THREADS), get an equal share.
* Every test starts from the same global random state (``random``, NumPy, torch seeded
  to 0 by an autouse fixture), so a test that draws from the global generators sees the
  same numbers whatever ran before it (selection with ``-k``, xdist's distribution).
* Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (``scripts/test.sh``, i.e.
  ``make test``, exports ``ci``; so does any environment with ``CI`` set):

  - ``ci``: derandomized (the same examples on every run and machine), no example
    database, no per-example deadline (timings on a loaded 2-core machine vary), and
    a failure prints its ``@reproduce_failure`` blob;
  - ``dev`` (default): randomized, so local runs keep exploring new inputs; no
    deadline.  Replay a CI failure with ``--hypothesis-seed=N`` or the printed blob.
* nbval starts each notebook's kernel once; a kernel that dies before its first reply
  (two started at once on one host can be handed the same port, jupyter_client#487) is
  started again, as the batch runner does (``mtlkit.batch.execute.with_kernel_restarts``).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
# derandomize=False explicitly: Hypothesis derandomizes its default settings when it
# detects a CI environment, and a profile inherits them unless it says otherwise.
settings.register_profile("dev", derandomize=False, deadline=None, print_blob=True)


def hypothesis_profile(env: dict[str, str] | os._Environ = os.environ) -> str:
    """The profile to load: ``$HYPOTHESIS_PROFILE``, else ``ci`` under CI, else ``dev``."""
    name = env.get("HYPOTHESIS_PROFILE", "").strip()
    if name:
        return name
    return "ci" if env.get("CI", "").strip().lower() not in ("", "0", "false") else "dev"


settings.load_profile(hypothesis_profile())


@pytest.fixture(autouse=True)
def _seed_global_generators():
    """Seed the global generators before each test (hypothesis reseeds them per example)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def restart_dead_nbval_kernels() -> None:
    """Make nbval's kernel start go through :func:`with_kernel_restarts` (once)."""
    try:
        import nbval.kernel as nbk
    except ImportError:
        return
    from mtlkit.batch.execute import with_kernel_restarts

    start = nbk.start_new_kernel
    if getattr(start, "restarts_dead_kernels", False):
        return

    def start_new_kernel(*args, **kwargs):
        return with_kernel_restarts(lambda: start(*args, **kwargs))

    start_new_kernel.restarts_dead_kernels = True
    nbk.start_new_kernel = start_new_kernel


def pytest_configure(config):
    restart_dead_nbval_kernels()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)
