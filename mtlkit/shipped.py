"""Results that ship: precomputed benchmark runs under ``results/<name>/``, with provenance.

A benchmark grid that a reader would wait an hour or more for (the ``paper-cpu``
profile of the 5x notebooks) is run once, and the completed run folder that
:mod:`mtlkit.nbrun` wrote is copied here by :func:`ship`: its tidy records, tables,
figures, ``metrics.json`` and ``claims.json``, plus ``PROVENANCE.json`` (the command,
the commit, whether the tree had local changes, the machine and the date) and a
``README.md`` that says the same for a person.  Nothing in ``results/`` is edited by
hand; :func:`ship` replaces a folder as a whole.

Notebooks call :func:`load` and show what it returns *next to* what they just
computed, labelled with :meth:`Shipped.label` ("precomputed: ...").

Command line::

    python -m mtlkit.shipped runs/paper-cpu/50_benchmark_text_classification \\
        50_benchmark_text_classification --command "make results"
    python -m mtlkit.shipped --all runs/paper-cpu --command "make results"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

PROVENANCE = "PROVENANCE.json"
#: what is copied from a run folder (glob patterns relative to it)
INCLUDE = ("records.csv", "*.csv", "*.md", "*.json", "figures/*.png", "figures/*.svg")
#: never copied: runner markers, checkpoints, model weights, executed notebooks
EXCLUDE_SUFFIXES = (".pt", ".ipynb", ".pth", ".tmp")
MAX_FILE_BYTES = 5_000_000  #: a larger file is refused: results/ stays small enough for git


def repo_root() -> Path:
    """The checkout that holds ``notebooks/`` (next to the package when installed
    editable), else the current folder."""
    here = Path(__file__).resolve().parents[1]
    if (here / "notebooks").is_dir():
        return here
    for p in [Path.cwd(), *Path.cwd().parents]:
        if (p / "notebooks").is_dir():
            return p
    return Path.cwd()


def results_root() -> Path:
    """``<checkout>/results``."""
    return repo_root() / "results"


# ----------------------------------------------------------------- provenance
def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                             timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What ran it: OS, CPU model and cores, memory, Python, torch and the GPU if any."""
    import torch

    info: dict[str, Any] = {"os": platform.platform(), "cpu": _cpu_model(),
                            "cores": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def provenance(command: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record written next to shipped results."""
    return {"command": command, "commit": _git("rev-parse", "HEAD") or None,
            "local_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "machine": machine(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **(extra or {})}


# ----------------------------------------------------------------------- ship
def _selected(run_dir: Path, include: Sequence[str]) -> list[Path]:
    files: dict[Path, None] = {}
    for pattern in include:
        for p in sorted(run_dir.glob(pattern)):
            if p.is_file() and not p.name.startswith((".", "_")) \
                    and p.suffix not in EXCLUDE_SUFFIXES:
                files[p] = None
    return list(files)


def ship(run_dir: str | Path, name: str, command: str, *, root: str | Path | None = None,
         include: Sequence[str] = INCLUDE, require_done: bool = True) -> Path:
    """Copy a completed run folder's results to ``<root>/<name>/`` with provenance.

    Refuses a run folder that :mod:`mtlkit.nbrun` did not mark completed
    (``_done.json``), unless ``require_done=False``, and any file over
    :data:`MAX_FILE_BYTES`.  The target folder is replaced as a whole (written
    beside it, then renamed), so a failure leaves the previous results intact.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder {run_dir}")
    done = run_dir / "_done.json"
    if require_done and not done.exists():
        raise ValueError(f"{run_dir} holds no completed run (no _done.json): run the notebook "
                         "with python -m mtlkit.nbrun first; only completed runs ship")
    files = _selected(run_dir, include)
    if not files:
        raise ValueError(f"nothing to ship in {run_dir} (looked for {', '.join(include)})")
    big = [f"{p} ({p.stat().st_size} bytes)" for p in files if p.stat().st_size > MAX_FILE_BYTES]
    if big:
        raise ValueError(f"files too large to ship (> {MAX_FILE_BYTES} bytes): {big}")
    target = Path(root) if root else results_root()
    final = target / name
    stage = target / f".{name}.staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for f in files:
        dest = stage / f.relative_to(run_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    run_info = json.loads(done.read_text()) if done.exists() else {}
    prov = provenance(command, {"notebook": run_info.get("notebook"),
                                "parameters": run_info.get("parameters"),
                                "wall_s": run_info.get("wall_s"),
                                "files": [f.relative_to(run_dir).as_posix() for f in files]})
    (stage / PROVENANCE).write_text(json.dumps(prov, indent=1, default=str))
    (stage / "README.md").write_text(_readme(name, prov))
    old = target / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    stage.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _readme(name: str, prov: dict[str, Any]) -> str:
    m = prov["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in (prov.get("parameters") or {}).items()
                       if k != "OUT_DIR")
    files = "\n".join(f"- `{f}`" for f in prov.get("files", []))
    dirty = " (with local changes)" if prov.get("local_changes") else ""
    return (f"# Precomputed results: {name}\n\nWritten by `mtlkit.shipped.ship`; do not edit "
            "by hand.\n\n"
            f"- command: `{prov['command']}`\n- commit: `{prov.get('commit')}`{dirty}\n"
            f"- machine: {m.get('cpu')}, {m.get('cores')} cores{gpu}; Python {m.get('python')}, "
            f"torch {m.get('torch')}\n- date: {prov['date']}\n"
            + (f"- notebook: `{prov.get('notebook')}` with {params}\n" if prov.get("notebook")
               else "")
            + (f"- wall time: {prov['wall_s']:.0f} s\n" if prov.get("wall_s") else "")
            + f"\n## Files\n\n{files}\n")


def ship_all(out: str | Path, command: str, *, root: str | Path | None = None,
             names: Sequence[str] | None = None) -> list[Path]:
    """:func:`ship` every completed run folder directly under ``out`` (an nbrun ``--out``),
    each under its own folder name; ``names`` restricts to those folders."""
    out = Path(out)
    runs = sorted(p for p in out.iterdir() if (p / "_done.json").exists()) if out.is_dir() else []
    if names is not None:
        runs = [p for p in runs if p.name in set(names)]
    if not runs:
        raise ValueError(f"no completed run folder under {out}")
    return [ship(p, p.name, command, root=root) for p in runs]


# ----------------------------------------------------------------------- load
@dataclass
class Shipped:
    """Precomputed results read back from ``results/<name>/``."""

    name: str
    folder: Path
    provenance: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def records(self) -> pd.DataFrame | None:
        """The tidy records (``records.csv``), or None if none were shipped."""
        from mtlkit.results import read_records

        path = self.folder / "records.csv"
        return read_records(path) if path.exists() else None

    def read_csv(self, name: str) -> pd.DataFrame:
        """Another shipped table by file name."""
        return pd.read_csv(self.folder / name)

    def metrics(self) -> dict[str, Any]:
        """The shipped ``metrics.json`` ({} if none)."""
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def label(self) -> str:
        """"precomputed: <command> at <commit> on <machine>, <date>" for captions."""
        p, m = self.provenance, self.provenance.get("machine", {})
        commit = (p.get("commit") or "unknown")[:10]
        gpu = m.get("gpu") or f"{m.get('cores')}-core CPU"
        return f"precomputed: `{p.get('command')}` at {commit} on {gpu}, {p.get('date', '?')}"


def load(name: str, root: str | Path | None = None) -> Shipped | None:
    """The shipped results called ``name``, or None (with nothing raised) if absent."""
    folder = (Path(root) if root else results_root()) / name
    prov_file = folder / PROVENANCE
    if not prov_file.exists():
        return None
    prov = json.loads(prov_file.read_text())
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return Shipped(name, folder, prov, files)


def available(root: str | Path | None = None) -> list[str]:
    """Names of every shipped result folder."""
    base = Path(root) if root else results_root()
    return sorted(p.name for p in base.iterdir() if (p / PROVENANCE).exists()) \
        if base.is_dir() else []


# ------------------------------------------------------------------------ CLI
def main(argv: Iterable[str] | None = None) -> int:
    """``python -m mtlkit.shipped RUN_DIR NAME --command CMD``; exit 2 on a bad argument."""
    p = argparse.ArgumentParser(prog="python -m mtlkit.shipped", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a completed run folder written by mtlkit.nbrun, "
                   "or with --all an nbrun --out folder")
    p.add_argument("name", nargs="?", help="folder name under results/ (usually the notebook "
                   "stem); with --all, ship only the run folders named here (comma-separated)")
    p.add_argument("--all", action="store_true", help="ship every completed run under RUN_DIR")
    p.add_argument("--command", required=True, help="the command that produced the run")
    p.add_argument("--root", type=Path, help="results folder (default <checkout>/results)")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        if args.all:
            names = args.name.split(",") if args.name else None
            for path in ship_all(args.run_dir, args.command, root=args.root, names=names):
                print(path)
        elif not args.name:
            p.error("NAME is required without --all")
        else:
            print(ship(args.run_dir, args.name, args.command, root=args.root))
    except (OSError, ValueError) as e:
        print(f"shipped: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
