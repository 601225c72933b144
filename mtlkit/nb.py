"""Notebook helpers: ``setup(globals())``, ``claim``, ``check`` and outputs.

Every notebook starts with a ``parameters`` cell of literal assignments and
then calls ``cfg = mtlkit.nb.setup(globals())``, which

* validates the profile (:data:`mtlkit.profiles.PROFILES`) and the device,
* seeds ``random``, NumPy and torch (CPU and CUDA) from ``SEEDS[0]``,
* sets the float32 matmul precision (``highest``; TF32 only in ``full``),
* creates ``OUT_DIR`` and prints the resolved configuration.

``claim`` asserts and records a verdict; every verdict is appended to
``OUT_DIR/claims.json`` so the run report can show it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlkit.profiles import PROFILES
from mtlkit.utils import jsonable, seed_everything  # also mtlkit.nb.jsonable, .seed_everything

_CLAIMS: list[dict[str, Any]] = []
_STATE: dict[str, Any] = {"out_dir": None}


class SetupError(ValueError):
    """A bad value in a notebook's parameters cell."""


@dataclass
class Config:
    """The resolved notebook configuration.

    Every parameter of the notebook is an attribute in lower case
    (``cfg.seeds``); ``cfg.pick(smoke=..., teach=..., full=..., paper_cpu=...)`` chooses a
    value by profile.
    """

    profile: str
    device: Any
    seeds: list[int]
    out_dir: Path
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The first seed, used for everything that needs one."""
        return self.seeds[0]

    def pick(self, smoke: Any, teach: Any, full: Any | None = None,
             paper_cpu: Any | None = None) -> Any:
        """The value for the current profile (``full`` and ``paper_cpu`` default to ``teach``)."""
        return {"smoke": smoke, "teach": teach, "full": teach if full is None else full,
                "paper-cpu": teach if paper_cpu is None else paper_cpu}[self.profile]

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name.upper() in params:
            return params[name.upper()]
        raise AttributeError(f"no parameter {name!r}; parameters: {', '.join(params)}")

    def path(self, *parts: str) -> Path:
        """A path under OUT_DIR, with its parent folder created."""
        p = self.out_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def _params(ns: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's upper-case parameters (names like ``PROFILE``, ``SEEDS``)."""
    return {k: v for k, v in ns.items() if k.isupper() and not k.startswith("_")
            and not callable(v) and not hasattr(v, "__file__")}


def resolve_device(name: str) -> Any:
    """'auto' picks CUDA, then MPS, then CPU; an unavailable device raises."""
    import torch

    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise SetupError(f"DEVICE={name!r} is not a device; use 'auto', 'cpu', 'cuda', "
                         "'cuda:N' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"DEVICE={name!r} but CUDA is not available here; use DEVICE='auto' "
                         "or 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SetupError(f"DEVICE={name!r} but MPS is not available here; use 'auto' or 'cpu'")
    return dev


def setup(ns: dict[str, Any], *, quiet: bool = False) -> Config:
    """Resolve a notebook's parameters (pass ``globals()``); see module docstring."""
    import torch

    params = _params(ns)
    profile = str(params.get("PROFILE", "teach"))
    if profile not in PROFILES:
        raise SetupError(f"PROFILE={profile!r} is not a profile; choose one of {PROFILES}")
    seeds = params.get("SEEDS", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SetupError(f"SEEDS must be a non-empty list of integers, got {seeds!r}")
    device = resolve_device(params.get("DEVICE", "auto"))
    out_dir = Path(str(params.get("OUT_DIR", "") or _default_out(ns, profile))).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seeds[0])
    torch.set_float32_matmul_precision("high" if profile == "full" else "highest")
    _STATE["out_dir"] = out_dir
    _CLAIMS.clear()
    claims_file = out_dir / "claims.json"
    if claims_file.exists():
        claims_file.unlink()
    cfg = Config(profile, device, list(seeds), out_dir, params)
    if not quiet:
        _print_config(cfg)
    return cfg


def _default_out(ns: Mapping[str, Any], profile: str) -> Path:
    # JupyterLab's kernel sets __session__ to the notebook path; VS Code __vsc_ipynb_file__
    name = Path(str(ns.get("__session__") or ns.get("__vsc_ipynb_file__") or "notebook")).stem
    root = Path(__file__).resolve().parents[1]  # the checkout, when installed editable
    base = root / "runs" if (root / "notebooks").is_dir() else Path("runs")
    return base / "interactive" / profile / name  # never a folder nbrun fills


def _print_config(cfg: Config) -> None:
    import torch

    rows = {**{k: v for k, v in cfg.params.items()}, "device": str(cfg.device),
            "torch": torch.__version__,
            "matmul precision": torch.get_float32_matmul_precision()}
    width = max(len(k) for k in rows)
    print("Resolved configuration")
    for k, v in rows.items():
        print(f"  {k:<{width}}  {v}")


# --------------------------------------------------------------------- claims
def claim(name: str, ok: Any, detail: str = "", expect: bool = True) -> bool:
    """Assert a claim and record its verdict.

    ``expect=False`` records a claim of a paper that does *not* hold as
    written: the assert then checks that ``ok`` is false (the counterexample
    really is one).
    """
    ok = bool(ok)
    verdict = ("holds" if ok else "fails") if expect else (
        "fails as written (shown)" if not ok else "unexpectedly holds")
    rec = {"claim": name, "ok": ok, "expect": expect, "verdict": verdict, "detail": str(detail)}
    _CLAIMS.append(rec)
    mark = "✓" if ok == expect else "✗"
    print(f"{mark} {name}: {verdict}" + (f" — {detail}" if detail else ""))
    _write_claims()
    assert ok == expect, f"claim {name!r}: expected {'true' if expect else 'false'}; {detail}"
    return ok


FINDINGS = {True: "supported", False: "not supported", None: "inconclusive"}


def finding(name: str, supported: bool | None, detail: str = "", source: str = "") -> str:
    """Record the verdict on a paper's *empirical* claim; never asserts.

    Unlike :func:`claim` (a fact the notebook checks), a finding is decided by the
    measurements (seeds, machine, stand-in data): ``supported`` (True), ``not
    supported`` (False) or ``inconclusive`` (None, e.g. confidence intervals that
    overlap).  ``detail`` should give the statistics (:mod:`mtlkit.verdicts`);
    ``source`` where the paper claims it.  Returns the verdict.
    """
    if supported is not None:
        supported = bool(supported)
    verdict = FINDINGS[supported]
    rec = {"claim": name, "kind": "finding", "ok": supported, "expect": None,
           "verdict": verdict, "detail": str(detail), "source": source}
    _CLAIMS.append(rec)
    print(f"◆ {name}: {verdict}" + (f" ({source})" if source else "")
          + (f" — {detail}" if detail else ""))
    _write_claims()
    return verdict


def claims() -> list[dict[str, Any]]:
    """The verdicts recorded since ``setup``."""
    return list(_CLAIMS)


def claims_table():
    """The verdicts as a pandas DataFrame."""
    import pandas as pd

    return pd.DataFrame(_CLAIMS, columns=["claim", "verdict", "detail"])


def _write_claims() -> None:
    out = _STATE.get("out_dir")
    if out is not None:
        (Path(out) / "claims.json").write_text(json.dumps(_CLAIMS, indent=1))


# ------------------------------------------------------------------ exercises
def check(answer: Any, expected: Any, tol: float = 1e-6, name: str = "answer") -> bool:
    """Print ✓ or ✗ for an exercise answer; never raises."""
    try:
        ok = _close(answer, expected, tol)
    except Exception as e:  # an exercise must never stop the notebook
        print(f"✗ {name}: could not compare ({type(e).__name__}: {e})")
        return False
    print(f"{'✓' if ok else '✗'} {name}"
          + ("" if ok else f": got {answer!r}, expected {expected!r}"))
    return ok


def _close(a: Any, b: Any, tol: float) -> bool:
    if a is None or a is Ellipsis:
        return False
    if isinstance(b, (str, bool)):
        return a == b
    try:
        import numpy as np

        a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return a_arr.shape == b_arr.shape and bool(np.allclose(a_arr, b_arr, atol=tol, rtol=tol))
    except (TypeError, ValueError):
        return a == b


# -------------------------------------------------------------------- outputs
def save_metrics(metrics: Mapping[str, Any], out_dir: str | Path | None = None) -> Path:
    """Merge ``metrics`` into ``OUT_DIR/metrics.json`` (numbers made JSON-safe)."""
    out = Path(out_dir or _STATE.get("out_dir") or ".")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update({k: jsonable(v) for k, v in metrics.items()})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def out_dir() -> Path:
    """OUT_DIR of the current notebook (after ``setup``)."""
    out = _STATE.get("out_dir")
    if out is None:
        raise RuntimeError("call mtlkit.nb.setup(globals()) first")
    return Path(out)
