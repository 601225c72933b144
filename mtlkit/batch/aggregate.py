"""A sweep's results in one place: the tidy table of its runs, and the benchmark tables and
figures recomputed from the records of every completed run.

``collect(out)`` writes, under ``out``:

* ``sweep.csv``: one row per run (completed, failed or interrupted): ``run`` (its folder),
  ``notebook``, ``status``, ``wall_s``, ``finished``, ``host``, ``error``, then one column
  per parameter (lists and mappings as JSON). Each parameter set appears once.
* for every notebook whose completed runs wrote training records (``records.csv`` in their
  ``OUT_DIR``, as the benchmark notebooks 50 and 51 do; :mod:`mtlkit.results`):
  ``records/<notebook>.csv`` (all of them, each with its ``run``), ``tables/<notebook>.md``
  and ``.csv`` (``rlw.md`` Table 1 by :func:`mtlkit.results.paper_table`: the mean over
  seeds of every test metric, Δp and Δt against EW) and ``figures/<notebook>_delta_p.png``.

A benchmark run trains EW next to its own methods (the baseline of its table), so several
runs hold EW for one seed: each (method, hyper-parameters, seed) is taken from one run only,
the first by folder name. Δt compares the epoch times of runs that may have executed on
different machines: read it only for runs of one machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mtlkit import plots, results
from mtlkit.batch.runs import completed_runs, run_summary, status_of, unfinished_runs

RECORDS = "records.csv"
KEY = ["dataset", "architecture", "method", "hparams", "seed"]
BASELINE = "EW"


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def sweep_table(out: str | Path) -> pd.DataFrame:
    """Every run under ``out`` with its status and parameters (see the module docstring)."""
    out = Path(out)
    rows = []
    for run_dir in completed_runs(out) + unfinished_runs(out):
        r = run_summary(run_dir, out)
        info = {"run": r["label"], "notebook": r["notebook"], "status": r["status"],
                "wall_s": r["wall_s"], "finished": r["finished"],
                "host": status_of(run_dir)[1].get("host", ""), "error": r["error"]}
        rows.append({**info, **{k: _cell(v) for k, v in r["parameters"].items()}})
    return pd.DataFrame(rows, columns=None if rows else ["run", "notebook", "status"])


def benchmark_records(out: str | Path) -> dict[str, pd.DataFrame]:
    """Notebook stem -> the records of its completed runs, one run per (method, seed)."""
    out = Path(out)
    found: dict[str, list[pd.DataFrame]] = {}
    for run_dir in completed_runs(out):
        path = run_dir / RECORDS
        if not path.is_file():
            continue
        r = run_summary(run_dir, out)
        df = results.read_records(path)
        df.insert(0, "run", r["label"])
        found.setdefault(Path(r["notebook"]).stem or run_dir.name, []).append(df)
    merged = {}
    for stem, frames in found.items():
        df = pd.concat(frames, ignore_index=True)
        first = df.groupby(KEY, dropna=False)["run"].transform("min")
        merged[stem] = df[df["run"] == first].reset_index(drop=True)
    return merged


def benchmark_table(records: pd.DataFrame) -> pd.DataFrame:
    """``rlw.md`` Table 1 from the merged records (raises ValueError without EW)."""
    methods = list(dict.fromkeys([BASELINE, *records["method"]]))
    return results.paper_table(records, baseline=BASELINE,
                               methods=[m for m in methods if (records["method"] == m).any()])


def _atomic_csv(df: pd.DataFrame, path: Path, **kw: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, **kw)
    tmp.replace(path)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def collect(out: str | Path) -> list[Path]:
    """Write ``sweep.csv`` and the benchmark tables and figures; the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    written = [_atomic_csv(sweep_table(out), out / "sweep.csv", index=False)]
    for stem, records in benchmark_records(out).items():
        written.append(_atomic_csv(records, out / "records" / f"{stem}.csv", index=False))
        try:
            table = benchmark_table(records)
        except (ValueError, KeyError, ZeroDivisionError) as e:  # no EW, a metric missing...
            print(f"note: no table for {stem} (its records are in records/{stem}.csv): "
                  f"{type(e).__name__}: {e}")
            continue
        seeds = records.groupby("method")["seed"].nunique()
        head = (f"# {stem}: {records['run'].nunique()} run(s), seeds per method "
                f"{seeds.min()}-{seeds.max()}\n\nRecomputed by mtlkit.batch.aggregate from "
                f"the records of every completed run under {out.name}/. Δt compares runs "
                "that may have run on different machines.\n\n")
        written.append(_write_text(out / "tables" / f"{stem}.md",
                                   head + results.to_markdown(table, digits=4) + "\n"))
        flat = table.copy()
        flat.columns = ["/".join(c) for c in table.columns]
        written.append(_atomic_csv(flat, out / "tables" / f"{stem}.csv"))
        dp = table[("Δp", "↑")].astype(float).drop(BASELINE)
        if not dp.empty:
            written.append(out / "figures" / f"{stem}_delta_p.png")
            written[-1].parent.mkdir(parents=True, exist_ok=True)
            plt.close(plots.delta_p_bars(dp, baseline=BASELINE, save=written[-1]))
    return written
