"""Small utilities shared by the library and the notebook helpers (one place each).

* :func:`jsonable`: a value made JSON-safe (records, summaries, ``metrics.json``);
* :func:`seed_everything`, :func:`rng_state`, :func:`set_rng_state`: the random state of
  ``random``, NumPy and torch (CPU and CUDA), seeded or saved and restored as one;
* :func:`slug`: text made safe for a file or folder name.

NumPy and torch are imported inside the functions that need them, so that importing this
module (and :mod:`mtlkit.nb`, the batch runner) stays light.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
from collections.abc import Iterator, Mapping
from typing import Any


def jsonable(v: Any) -> Any:
    """``v`` with tensors/arrays as lists, non-finite floats and paths/devices as strings."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def seed_everything(seed: int) -> None:
    """Seed random, NumPy and torch (CPU and every CUDA device)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict[str, Any]:
    """The state of every generator :func:`seed_everything` seeds (for a checkpoint)."""
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def slug(text: str, keep: str = "-", strip: bool = True) -> str:
    """``text`` as part of a file name: each run of characters other than ASCII letters,
    digits, ``_`` and those in ``keep`` becomes one ``_``; ``strip`` then drops ``_`` at
    both ends.  ``slug("MGDA(alpha: 0.5)") == "MGDA_alpha_0_5"``."""
    out = re.sub(f"[^A-Za-z0-9_{re.escape(keep)}]+", "_", text)
    return out.strip("_") if strip else out


@contextlib.contextmanager
def temporary_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` (inherited by the processes started meanwhile), then
    restore what was there."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
