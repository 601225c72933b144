"""Run folders written by :mod:`mtlkit.nbrun`, and the tables collected from them.

Layout of an output folder ``out`` (``--out``)::

    out/<name>/            one COMPLETED run: the executed notebook, _done.json, metrics.json,
                           claims.json, figures/, and (after --report) <notebook>.html
    out/_attempts/<name>/  the latest attempt of a run that failed (_error.json) or was
                           interrupted (no marker): its partial notebook, kept for inspection
    out/metrics.csv        the metrics of every completed run (one tidy row per key)
    out/runs.csv           every run and attempt: status, parameters, finish time, error
    out/index.html         the report (:mod:`mtlkit.batch.report`)

A run executes in ``out/_attempts/<name>/`` and is moved to ``out/<name>/`` only when it
completed, so ``out/<name>/`` always holds one whole, successful run (or nothing), and a
failed ``--force`` rerun leaves the earlier result in place.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DONE = "_done.json"
ERROR = "_error.json"
ATTEMPTS = "_attempts"
REPLACED = ".replaced"  # under ATTEMPTS: a completed run being swapped out (transient)
PREPARED = "_out"  # OUT_DIR of --prepare-only notebooks
SKIP_PARTS = {ATTEMPTS, PREPARED}


def load_notebook(path: str | Path) -> dict[str, Any]:
    """The notebook as a plain dict (nbformat 4 JSON)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; lists are kept (written as JSON)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def read_json(path: Path, default: Any = None) -> Any:
    """``path`` parsed as JSON, or ``default`` if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def status_of(run_dir: Path) -> tuple[str, dict[str, Any]]:
    """``(status, record)`` of a run or attempt folder.

    status: ``ok`` (completed), ``failed`` (``_error.json``), ``interrupted`` (an attempt
    without a marker: killed), ``incomplete`` (any other folder without a marker).
    """
    done = read_json(run_dir / DONE, None)
    if isinstance(done, dict) and done.get("status") == "ok":
        return "ok", done
    error = read_json(run_dir / ERROR, None)
    if isinstance(error, dict):
        return "failed", error
    return ("interrupted" if run_dir.parent.name == ATTEMPTS else "incomplete"), {}


def completed_runs(out: Path) -> list[Path]:
    """Folders under ``out`` holding a completed run (attempts and prepared copies excluded)."""
    found = []
    for marker in out.rglob(DONE):
        rel = marker.parent.relative_to(out).parts
        if rel and not SKIP_PARTS & set(rel) and status_of(marker.parent)[0] == "ok":
            found.append(marker.parent)
    return sorted(found)


def unfinished_runs(out: Path) -> list[Path]:
    """Folders holding a run that did not complete: failed or interrupted attempts, and
    (older layouts, runs written outside the runner) folders with outputs but no marker."""
    attempts = out / ATTEMPTS
    found = {p for p in attempts.glob("*") if p.is_dir() and not p.name.startswith(".")
             and any(p.iterdir())} if attempts.is_dir() else set()
    done = set(completed_runs(out))
    for pattern in (ERROR, "claims.json", "metrics.json", "*.ipynb"):
        for marker in out.rglob(pattern):
            run_dir = marker.parent
            rel = run_dir.relative_to(out).parts
            if (rel and not SKIP_PARTS & set(rel) and run_dir not in done
                    and not any(parent in done for parent in run_dir.parents)):
                found.add(run_dir)
    return sorted(found)


def notebook_file(run_dir: Path, info: Mapping[str, Any]) -> Path | None:
    """The executed notebook of a run folder (None if it has none)."""
    named = run_dir / str(info.get("notebook", ""))
    if info.get("notebook") and named.is_file():
        return named
    return next(iter(sorted(run_dir.glob("*.ipynb"))), None)


def shown_parameters(info: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that define a run (all of them, OUT_DIR left out: it names the folder)."""
    params = info.get("resolved") or info.get("parameters") or {}
    return {k: v for k, v in sorted(params.items()) if k != "OUT_DIR"}


def run_summary(run_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """What is recorded about one run (or attempt) folder: ``dir``, ``status``,
    ``notebook`` (its file name; "" if unknown), ``label`` (the folder relative to
    ``out``), ``wall_s``, ``finished``, ``error``, ``parameters``
    (:func:`shown_parameters`), ``ipynb`` (the executed notebook, or None), ``claims`` (a
    list), ``metrics`` (``metrics.json`` as read, or None) and ``figures`` (the PNG files
    under ``figures/``)."""
    status, info = status_of(run_dir)
    nb = notebook_file(run_dir, info)
    claims = read_json(run_dir / "claims.json", [])
    return {
        "dir": run_dir, "status": status,
        "notebook": info.get("notebook") or (nb.name if nb else ""),
        "label": run_dir.relative_to(out).as_posix() if out else run_dir.name,
        "wall_s": info.get("wall_s"), "finished": info.get("finished", ""),
        "error": info.get("error", ""), "parameters": shown_parameters(info), "ipynb": nb,
        "claims": claims if isinstance(claims, list) else [],
        "metrics": read_json(run_dir / "metrics.json", None),
        "figures": sorted((run_dir / "figures").rglob("*.png")),
    }


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)
    return path


def collect_metrics(out: str | Path) -> Path:
    """The metrics of every completed run as one tidy CSV, ``out/metrics.csv``.

    Columns: notebook, run (folder relative to ``out``), status (always ``ok``: failed and
    unfinished attempts are never listed here, see ``runs.csv``), finished (ISO time),
    parameters (JSON, every parameter of the run but OUT_DIR), key (nested dicts flattened
    with dots), value (lists and strings as JSON). Each completed run appears once.
    """
    out = Path(out)
    rows = []
    for run_dir in completed_runs(out):
        r = run_summary(run_dir, out)
        metrics = {} if r["metrics"] is None else r["metrics"]
        if not isinstance(metrics, dict):
            metrics = {"_unreadable": True}
        head = [r["notebook"] or run_dir.name, r["label"], "ok", r["finished"],
                json.dumps(r["parameters"], sort_keys=True)]
        for key, value in flatten(metrics).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                value = json.dumps(value)
            rows.append([*head, key, value])
    return _write_csv(out / "metrics.csv",
                      ["notebook", "run", "status", "finished", "parameters", "key", "value"], rows)


def collect_runs(out: str | Path) -> Path:
    """Every completed run and every failed or interrupted attempt: ``out/runs.csv``."""
    out = Path(out)
    rows = []
    for run_dir in completed_runs(out) + unfinished_runs(out):
        r = run_summary(run_dir, out)
        wall = "" if r["wall_s"] is None else r["wall_s"]
        rows.append([r["label"], r["notebook"], r["status"], r["finished"], wall,
                     json.dumps(r["parameters"], sort_keys=True), r["error"]])
    return _write_csv(out / "runs.csv", ["folder", "notebook", "status", "finished", "wall_s",
                                         "parameters", "error"], rows)
