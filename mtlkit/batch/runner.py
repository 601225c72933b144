"""Batch runner over papermill: ``python -m mtlkit.nbrun NOTEBOOK... [options]``.

It fixes what papermill alone gets wrong for this workbook:

* an unknown parameter name is an error that lists the valid names (papermill only
  warns); every ``-p NAME VALUE`` is checked against the annotation in the notebook's
  ``parameters`` cell and reaches the kernel as a literal (:mod:`mtlkit.batch.params`);
* each parameter set has its own folder: ``<out>/<stem>/`` for the notebook's defaults
  (with ``--profile``/``-p PROFILE`` as the batch's profile), ``<out>/<stem>__<label>/``
  otherwise, the label naming the parameters that differ (``LR=0.3,SEEDS=0-1``, hashed when
  long); a folder holding a run with other parameters is never reused;
* a run executes in ``<out>/_attempts/<name>/`` (``OUT_DIR``, kernel in the notebook's
  folder, per-cell timeout, saved after every cell) and is moved to ``<out>/<name>/`` only
  once it completed, so a failed or interrupted attempt never replaces or mixes with a
  completed run; it stays in ``_attempts/`` with its partial notebook (and ``_error.json``);
* a completed run (``_done.json``) is skipped when run again with the same parameters and
  notebook source, unless ``--force``; failed runs do not stop the others, and the runner
  exits 1 at the end;
* runs go to a local process pool (``--jobs``) whose workers and kernels die with the
  runner (:mod:`mtlkit.batch.procguard`); afterwards ``<out>/metrics.csv`` (completed
  runs) and ``<out>/runs.csv`` (every run and attempt, with status) are written
  (:mod:`mtlkit.batch.runs`) and, with ``--report``, ``<out>/index.html``
  (:mod:`mtlkit.batch.report`).

This module is the runner's code; ``mtlkit.nbrun`` is its public name (``python -m
mtlkit.nbrun``, ``from mtlkit import nbrun``).

Examples::

    python -m mtlkit.nbrun notebooks/[0-9]*.ipynb --profile teach --out runs/teach --report
    python -m mtlkit.nbrun notebooks/00_*.ipynb -p SEEDS "[0, 1, 2]" --force
    python -m mtlkit.nbrun notebooks/*.ipynb --profile smoke --prepare-only \\
        --out runs/smoke-prepared
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlkit.batch import procguard
from mtlkit.batch.params import (  # noqa: F401 (re-exported: the runner's public names)
    Param,
    UsageError,
    coerce,
    defaults,
    expand_grid,
    load_grid,
    notebook_parameters,
    parameters_cell,
    parse_value,
    read_notebook,
    type_ok,
    validate,
)
from mtlkit.batch.report import write_report
from mtlkit.batch.runs import (  # noqa: F401 (re-exported)
    ATTEMPTS,
    DONE,
    ERROR,
    PREPARED,
    REPLACED,
    cell_source,
    collect_metrics,
    collect_runs,
    flatten,
    load_notebook,
    status_of,
    unfinished_runs,
)
from mtlkit.profiles import PROFILES
from mtlkit.utils import slug

KERNEL = "python3"
LABEL_MAX = 60


# ------------------------------------------------------------------------ runs
@dataclass
class NotebookRun:
    """One execution: a notebook with a parameter set."""

    notebook: Path
    params: dict[str, Any]  # what papermill injects: the given values and OUT_DIR
    run_dir: Path  # <out>/<name>: the completed run (prepare-only: OUT_DIR)
    output: Path  # the executed notebook in run_dir (prepare-only: <out>/<name>.ipynb)
    label: str  # <name>, the folder's name
    source_hash: str = ""
    resolved: dict[str, Any] = field(default_factory=dict)  # all parameters but OUT_DIR
    stage: Path | None = None  # <out>/_attempts/<name>: where it executes
    result: dict[str, Any] = field(default_factory=dict)


def source_hash(path: Path) -> str:
    """sha256 over the cells' sources and types (outputs and metadata ignored)."""
    nb = read_notebook(path)
    text = json.dumps([[c.get("cell_type"), cell_source(c)] for c in nb.get("cells", [])])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def value_text(v: Any) -> str:
    """A parameter value as label text: a list's items joined by ``-``, characters other
    than ``A-Z a-z 0-9 _ . + -`` as ``_`` (:func:`mtlkit.utils.slug`)."""
    text = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return slug(text, keep=".+-", strip=False)


def _faithful(v: Any) -> bool:
    """Does :func:`value_text` write ``v`` without losing anything?"""
    if isinstance(v, (list, tuple)):
        return all(not isinstance(x, (list, tuple, dict)) and "-" not in str(x)
                   and _faithful(x) for x in v)
    return not isinstance(v, dict) and value_text(v) == str(v)


def run_label(params: Mapping[str, Any]) -> str:
    """The folder label of the parameters that differ from the defaults: ``LR=0.3,SEEDS=0-1``.

    Readable while short and faithful; otherwise a readable prefix and a hash of the values.
    """
    label = ",".join(f"{k}={value_text(v)}" for k, v in sorted(params.items()))
    if len(label) > LABEL_MAX or not all(map(_faithful, params.values())):
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        label = f"{label[:40]}-{digest[:10]}"
    return label


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``a`` that ``b`` lacks or holds with another value."""
    return {k: v for k, v in a.items() if k not in b or not _same(v, b[k])}


def recorded_parameters(info: Mapping[str, Any], declared: Mapping[str, Param]) -> dict[str, Any]:
    """The parameters a run record says it ran with, over the notebook's current names."""
    rec = info.get("resolved") or {k: v for k, v in info.get("parameters", {}).items()
                                   if k != "OUT_DIR"}
    return {**defaults(declared), **{k: v for k, v in rec.items() if k in declared}}


def plan(notebooks: Sequence[Path], base: Mapping[str, Any], grid: list[dict[str, Any]],
         out: Path, raw: Mapping[str, str], prepare_only: bool = False) -> list[NotebookRun]:
    """Validate every parameter set for every notebook and lay out the runs (writes nothing).

    ``base`` and ``raw`` (command-line texts) hold for the whole batch, each grid entry on top.
    The batch's PROFILE counts as a default, so ``--profile smoke --out runs/smoke`` gives
    ``runs/smoke/<stem>/``.
    """
    out = Path(out).resolve()
    runs: list[NotebookRun] = []
    names: dict[str, Path] = {}
    for path in notebooks:
        declared = notebook_parameters(path)
        common = validate(path, base, raw)
        reference = {**defaults(declared), **{k: v for k, v in common.items() if k == "PROFILE"}}
        digest = source_hash(path)
        for g in grid:
            params = {**common, **validate(path, g)}
            resolved = {**defaults(declared), **params}
            diff = _diff(resolved, reference)
            name = f"{path.stem}__{run_label(diff)}" if diff else path.stem
            if name in names:
                if names[name] != path.resolve():
                    raise UsageError(f"{names[name]} and {path} would share {out / name}; "
                                     "run them into different --out folders")
                continue  # the same notebook and parameters, named twice
            names[name] = path.resolve()
            if prepare_only:
                run_dir, stage, output = out / PREPARED / name, None, out / f"{name}.ipynb"
            else:
                run_dir, stage = out / name, out / ATTEMPTS / name
                output = run_dir / path.name
            if "OUT_DIR" in declared:
                params["OUT_DIR"] = str(stage or run_dir)
            run = NotebookRun(path.resolve(), params, run_dir, output, name, digest, resolved,
                              stage)
            if not prepare_only:
                _check_folder(run, declared)
            runs.append(run)
    return runs


def _check_folder(run: NotebookRun, declared: Mapping[str, Param]) -> None:
    """Refuse a folder that holds a completed run with other parameters."""
    status, info = status_of(run.run_dir)
    if status != "ok":
        return
    was = recorded_parameters(info, declared)
    differs = _diff(run.resolved, was)
    if differs:
        text = ", ".join(f"{k}={was.get(k)!r} there, {v!r} now" for k, v in differs.items())
        raise UsageError(f"{run.run_dir} holds a completed run with other parameters ({text}; "
                         "the notebook's defaults or the profile changed?); move that folder "
                         "away or use another --out")


def is_done(run: NotebookRun) -> bool:
    """A completed run in ``run.run_dir`` with the same parameters and notebook source."""
    status, info = status_of(run.run_dir)
    if status != "ok":
        return False
    declared = notebook_parameters(run.notebook)
    return (_same(recorded_parameters(info, declared), run.resolved)
            and info.get("source_hash") == run.source_hash and run.output.exists())


# ------------------------------------------------------------ atomic results
def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _discard(old: Path, out: Path) -> None:
    """Delete a replaced run folder, unless it holds runs of an older nested layout."""
    if not old.exists():
        return
    if any(p.parent != old for p in old.rglob(DONE)):
        keep = out / f"{old.name}.before-{time.strftime('%Y%m%d-%H%M%S')}"
        old.rename(keep)
        print(f"note: {keep} keeps the runs that were nested in the replaced folder")
    else:
        _remove(old)


def promote(stage: Path, final: Path) -> None:
    """Move a completed attempt into place; the run it replaces is deleted only afterwards.

    A kill between the two renames leaves both under ``_attempts``; :func:`recover` finishes.
    """
    old = stage.parent / REPLACED / final.name
    if final.exists():
        old.parent.mkdir(exist_ok=True)
        _remove(old)
        final.rename(old)
    stage.rename(final)
    _discard(old, final.parent)


def recover(out: Path) -> None:
    """Finish what a kill interrupted in :func:`promote` (completed attempts not yet in place)."""
    attempts = out / ATTEMPTS
    for stage in sorted(attempts.glob("*")) if attempts.is_dir() else []:
        if stage.is_dir() and not stage.name.startswith(".") and status_of(stage)[0] == "ok":
            promote(stage, out / stage.name)
    for old in sorted((attempts / REPLACED).glob("*")) if attempts.is_dir() else []:
        if (out / old.name).exists():
            _discard(old, out)
        else:
            old.rename(out / old.name)


def _tidy(out: Path) -> None:
    """Remove ``_attempts`` when nothing is left in it."""
    for folder in (out / ATTEMPTS / REPLACED, out / ATTEMPTS):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def execute(run: NotebookRun, cell_timeout: float | None = None, prepare_only: bool = False,
            kernel: str = KERNEL) -> dict[str, Any]:
    """Run (or, with ``prepare_only``, parameterise) one notebook; returns its record.

    Failures are recorded (``_error.json`` in the attempt folder), not raised.
    """
    import papermill as pm

    # our own parser has validated the parameters; papermill's is stricter about comments
    # ("Unable to parse line") and would warn about parameters it failed to parse
    logging.getLogger("papermill").setLevel(logging.ERROR)
    if prepare_only:
        workdir, output, extra = run.run_dir, run.output, {}
    else:
        assert run.stage is not None
        workdir, output = run.stage, run.stage / run.notebook.name
        _remove(workdir)  # an earlier failed or interrupted attempt: superseded
        extra = {"kernel_manager_class": procguard.kernel_manager_class()}
    workdir.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {"notebook": run.notebook.name, "label": run.label, "parameters": run.params,
              "resolved": run.resolved, "source_hash": run.source_hash,
              "executed_in": str(workdir), "started": _now()}
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(run.notebook), str(output), parameters=run.params, kernel_name=kernel,
            cwd=str(run.notebook.parent), prepare_only=prepare_only, progress_bar=False,
            request_save_on_cell_execute=True,
            execution_timeout=cell_timeout if cell_timeout else None, **extra)
    except Exception as e:  # record and go on with the other runs
        record.update(status="failed", finished=_now(),
                      wall_s=round(time.perf_counter() - t0, 2), error=_describe(e))
        if not prepare_only:
            _write_json(workdir / ERROR, record)
        return record
    record.update(status="prepared" if prepare_only else "ok", finished=_now(),
                  wall_s=round(time.perf_counter() - t0, 2))
    if not prepare_only:
        procguard.exit_if_orphaned()  # a pool worker whose runner died records nothing
        _write_json(workdir / DONE, record)
        promote(workdir, run.run_dir)
    return record


def _describe(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        cell = getattr(e, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell [{cell}])" if cell is not None else "")
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _execute_star(args: tuple[NotebookRun, float | None, bool]) -> dict[str, Any]:
    procguard.exit_if_orphaned()  # never start a queued run for a runner that is gone
    return execute(*args)


def run_all(runs: Sequence[NotebookRun], jobs: int = 1, cell_timeout: float | None = None,
            prepare_only: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Execute runs, ``jobs`` at a time, with a tqdm bar; results in input order.

    Pool workers (and the kernels they start) die with this process
    (:mod:`~mtlkit.batch.procguard`).
    """
    from tqdm.auto import tqdm

    results: list[dict[str, Any]] = [{} for _ in runs]
    bar = tqdm(total=len(runs), desc="notebooks", unit="run", disable=not progress)
    tasks = [(r, cell_timeout, prepare_only) for r in runs]

    def done(i: int, res: dict[str, Any]) -> None:
        results[i] = res
        runs[i].result = res
        mark = {"ok": "✓", "prepared": "·"}.get(res["status"], "✗")
        extra = f"  {res.get('error', '')}" if res["status"] == "failed" else ""
        bar.write(f"{mark} {runs[i].label}  {res['status']}  {res.get('wall_s', 0):.1f}s{extra}")
        bar.update(1)

    if jobs <= 1 or len(runs) <= 1:
        for i, t in enumerate(tasks):
            bar.set_postfix_str(runs[i].label)
            done(i, _execute_star(t))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ex = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=procguard.worker_init, initargs=(os.getpid(),))
        try:
            futures = {ex.submit(_execute_star, t): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
    bar.close()
    return results


# --------------------------------------------------------------------- kernel
def check_kernel(name: str = KERNEL) -> str | None:
    """A warning if kernelspec ``name`` does not run this interpreter's environment."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return "jupyter_client is not installed; install mtlkit with its dependencies"
    fix = f"fix: {sys.executable} -m ipykernel install --sys-prefix --name {name}"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return f"no Jupyter kernel named {name!r}; {fix}"
    exe = spec.argv[0] if spec.argv else ""
    version = sys.version_info
    if exe in {"python", f"python{version[0]}", f"python{version[0]}.{version[1]}"}:
        return None  # jupyter_client substitutes sys.executable
    exe_path = Path(exe)
    if exe_path.exists() and (exe_path.resolve() == Path(sys.executable).resolve()
                              or exe_path.absolute().is_relative_to(Path(sys.prefix))):
        return None
    return (f"kernel {name!r} runs {exe}, not this environment ({sys.prefix}); notebooks "
            f"would not see mtlkit's pinned packages. {fix}")


def list_notebooks(folder: str | Path | None = None) -> list[dict[str, str]]:
    """The numbered notebooks in ``folder`` (default: the repository's ``notebooks/``).

    Each entry: ``number``, ``file``, ``title`` (the text after ``# NN ·`` in the
    first Markdown heading), ``series`` (foundations, loss-based, ...).
    """
    folder = Path(folder) if folder else notebooks_folder()
    series = {0: "foundations", 1: "loss-based", 2: "gradient-based", 3: "bi-level / meta",
              4: "theory"}
    out = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        title = ""
        for cell in load_notebook(path).get("cells", []):
            if cell.get("cell_type") == "markdown":
                first = cell_source(cell).strip().splitlines()[:1]
                title = re.sub(r"^#\s*\d+\s*·\s*", "", first[0]).strip() if first else ""
                break
        num = path.name[:2]
        out.append({"number": num, "file": path.name, "title": title,
                    "series": series.get(int(num) // 10, "benchmarks")})
    return out


def notebooks_folder() -> Path:
    """The repository's ``notebooks/`` folder (next to the ``mtlkit`` package)."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    if here.is_dir():
        return here
    for p in [Path.cwd(), *Path.cwd().parents]:
        if (p / "notebooks").is_dir():
            return p / "notebooks"
    raise FileNotFoundError("cannot find the notebooks/ folder; pass it explicitly")


# ------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtlkit.nbrun", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Parameter values are YAML: -p SEEDS '[0, 1, 2]' -p LR 1e-3 -p DEVICE cpu; "
               "a str parameter takes the text as typed.")
    p.add_argument("notebooks", nargs="+", type=Path, help="notebook files (.ipynb)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a parameter (YAML; a str parameter takes the text as typed)")
    p.add_argument("--profile", choices=PROFILES, help="shorthand for -p PROFILE P")
    p.add_argument("--out", type=Path, help="output folder (default runs/<profile>)")
    p.add_argument("--force", action="store_true",
                   help="rerun runs that already completed (the earlier result is replaced "
                        "only when the rerun completes)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    p.add_argument("--cell-timeout", type=float, default=3600,
                   help="seconds per cell before the run fails (0 = none; default 3600)")
    p.add_argument("--prepare-only", action="store_true",
                   help="inject parameters without executing; writes <out>/<name>.ipynb")
    p.add_argument("--report", action="store_true",
                   help="write <out>/index.html and an HTML copy of every executed notebook")
    p.add_argument("--grid", type=Path, help="YAML: a list of parameter dicts or a dict of lists")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def split_parameters(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Take every ``-p NAME VALUE`` out of ``argv`` verbatim (argparse would read a value such
    as ``-1e-5`` or ``-x`` as an option); the rest goes to argparse."""
    rest, params, i = [], [], 0
    while i < len(argv):
        if argv[i] in ("-p", "--parameter") and i + 2 < len(argv):
            params.append((argv[i + 1], argv[i + 2]))
            i += 3
        else:
            rest.append(argv[i])
            i += 1
    return rest, params


def unique_notebooks(paths: Iterable[Path]) -> list[Path]:
    """The notebook files, each once (however it was named), in the order given."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such notebook: {', '.join(missing)}")
    seen: dict[Path, Path] = {}
    for p in paths:
        seen.setdefault(p.resolve(), p)
    return list(seen.values())


def check_out(out: Path) -> None:
    """``--out`` must be a folder that exists or can be created, and be writable."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; choose another --out")
    probe = out.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out}: {probe} is a file, so the folder cannot be created")
    try:  # os.access is not enough (root, read-only mounts): try, and leave nothing behind
        os.rmdir(tempfile.mkdtemp(prefix=".nbrun-probe-", dir=probe))
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write in {probe} ({e.strerror or e}); "
                         "choose another --out") from None


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (POSIX): two runners never write one folder."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another nbrun is writing into {out}; wait for it, or use "
                             "another --out") from None
        yield
    finally:
        os.close(fd)


def _plan_from_args(args: argparse.Namespace) -> tuple[list[NotebookRun], Path]:
    notebooks = unique_notebooks(args.notebooks)
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    raw: dict[str, str] = {name: value for name, value in args.parameter}
    if args.profile:
        if raw.get("PROFILE", args.profile) != args.profile:
            raise UsageError(f"--profile {args.profile} contradicts -p PROFILE {raw['PROFILE']}")
        raw["PROFILE"] = args.profile
    out = args.out or Path("runs") / raw.get("PROFILE", "teach")
    check_out(out)
    grid = load_grid(args.grid) if args.grid else [{}]
    return plan(notebooks, {}, grid, out, raw, args.prepare_only), out


def _summary(out: Path, todo: Sequence[NotebookRun], prepare_only: bool) -> int:
    """Print what failed in this batch and what earlier attempts are unfinished; the count."""
    failed = [r for r in todo if r.result.get("status") == "failed"]
    for r in failed:
        kept = " (the earlier completed run is kept)" if status_of(r.run_dir)[0] == "ok" else ""
        where = r.run_dir if prepare_only else r.stage
        print(f"FAILED {r.label}: {r.result.get('error')}\n  see {where}{kept}", file=sys.stderr)
    if not prepare_only:
        names = {r.label for r in failed}
        older = [p for p in unfinished_runs(out) if p.name not in names]
        if older:
            print(f"note: {len(older)} earlier attempt(s) failed or were interrupted: "
                  f"{', '.join(p.name for p in older)} (see {out / 'runs.csv'})", file=sys.stderr)
    return len(failed)


def main(argv: Iterable[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 a run failed, 2 usage, 130 ^C)."""
    rest, params = split_parameters(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(rest)
    args.parameter = params
    try:
        runs, out = _plan_from_args(args)
    except UsageError as e:
        print(f"nbrun: error: {e}", file=sys.stderr)
        return 2
    warning = check_kernel()
    if warning:
        print(f"nbrun: warning: {warning}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out):
            if not args.prepare_only:
                recover(out)
            todo = runs if args.force or args.prepare_only else [r for r in runs if not is_done(r)]
            for r in runs:
                if r not in todo:
                    print(f"= {r.label}  already completed (use --force to rerun)")
            try:
                run_all(todo, args.jobs, args.cell_timeout or None, args.prepare_only,
                        progress=not args.no_progress)
            except KeyboardInterrupt:
                print(f"nbrun: interrupted; completed runs are kept, the unfinished ones are in "
                      f"{out / ATTEMPTS}; run the same command again to finish",
                      file=sys.stderr)
                return 130
            if not args.prepare_only:
                _tidy(out)
                print(f"metrics: {collect_metrics(out)}\nruns: {collect_runs(out)}")
            if args.report:
                print(f"report: {write_report(out)}")
    except UsageError as e:
        print(f"nbrun: error: {e}", file=sys.stderr)
        return 2
    return 1 if _summary(out, todo, args.prepare_only) else 0


if __name__ == "__main__":
    sys.exit(main())
