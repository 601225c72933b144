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
* runs go to a backend (:mod:`mtlkit.batch.backends`): this process (``--jobs 1``), a
  child process per run (``--jobs N``; on a machine with GPUs one run per GPU, each seeing
  only its own through ``CUDA_VISIBLE_DEVICES``), whose kernels die with the runner
  (:mod:`mtlkit.batch.procguard`), or Ray tasks (``--backend ray``); a run whose worker was
  lost is retried ``--retries`` times (:mod:`mtlkit.batch.schedule`), with progress and
  an ETA shown;
* a sweep file (``--sweep``, :mod:`mtlkit.batch.sweep`) holds notebooks, fixed parameters,
  grid, zipped parameters, seeds and per-run resources; ``--grid`` stays the short form;
* afterwards ``<out>/metrics.csv`` (completed runs), ``<out>/runs.csv`` (every run and
  attempt, with status) (:mod:`mtlkit.batch.runs`), ``<out>/sweep.csv`` and the benchmark
  tables and figures recomputed from every completed run (:mod:`mtlkit.batch.aggregate`)
  are written and, with ``--report``, ``<out>/index.html`` (:mod:`mtlkit.batch.report`).

This module is the runner's code; ``mtlkit.nbrun`` is its public name (``python -m
mtlkit.nbrun``, ``from mtlkit import nbrun``).

Examples::

    python -m mtlkit.nbrun notebooks/[0-9]*.ipynb --profile teach --out runs/teach --report
    python -m mtlkit.nbrun notebooks/00_*.ipynb -p SEEDS "[0, 1, 2]" --force
    python -m mtlkit.nbrun notebooks/*.ipynb --profile smoke --prepare-only \\
        --out runs/smoke-prepared
    python -m mtlkit.nbrun --sweep examples/sweeps/rlw_table1.yaml --out runs/rlw
    python -m mtlkit.nbrun --sweep examples/sweeps/rlw_table1.yaml --backend ray \\
        --address auto --out /shared/runs/rlw
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtlkit.batch.backends import (
    InlineBackend,
    LocalBackend,
    RayBackend,
    gpu_slots,
    require_ray,
    visible_gpus,
)
from mtlkit.batch.execute import (  # noqa: F401 (re-exported)
    KERNEL,
    NotebookRun,
    execute,
    is_done,
    promote,
    recorded_parameters,
    recover,
    same,
    tidy,
)
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
from mtlkit.batch.schedule import Backend, dispatch
from mtlkit.batch.sweep import Resources, Sweep, load_sweep
from mtlkit.profiles import PROFILES
from mtlkit.utils import slug

LABEL_MAX = 60


# ------------------------------------------------------------------------ runs
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


def _diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``a`` that ``b`` lacks or holds with another value."""
    return {k: v for k, v in a.items() if k not in b or not same(v, b[k])}


def plan(notebooks: Sequence[Path], base: Mapping[str, Any], grid: list[dict[str, Any]],
         out: Path, raw: Mapping[str, str], prepare_only: bool = False,
         fixed_are_defaults: bool = False) -> list[NotebookRun]:
    """Validate every parameter set for every notebook and lay out the runs (writes nothing).

    ``base`` and ``raw`` (command-line texts) hold for the whole batch, each grid entry on top.
    The batch's PROFILE counts as a default, so ``--profile smoke --out runs/smoke`` gives
    ``runs/smoke/<stem>/``; with ``fixed_are_defaults`` (sweeps) every parameter fixed for
    the whole batch does, and folder names name every swept value (defaults included).
    """
    out = Path(out).resolve()
    runs: list[NotebookRun] = []
    names: dict[str, Path] = {}
    for path in notebooks:
        declared = notebook_parameters(path)
        common = validate(path, base, raw)
        reference = {**defaults(declared), **{k: v for k, v in common.items()
                                              if k == "PROFILE" or fixed_are_defaults}}
        digest = source_hash(path)
        for g in grid:
            params = {**common, **validate(path, g)}
            resolved = {**defaults(declared), **params}
            diff = _diff(resolved, reference)
            if fixed_are_defaults:  # a sweep's folders name every swept value
                diff = {**diff, **{k: params[k] for k in g}}
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
    p.add_argument("notebooks", nargs="*", type=Path,
                   help="notebook files (.ipynb); or give them in a --sweep file")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set a parameter (YAML; a str parameter takes the text as typed)")
    p.add_argument("--profile", choices=PROFILES, help="shorthand for -p PROFILE P")
    p.add_argument("--out", type=Path,
                   help="output folder (default runs/<profile>; with --sweep runs/sweeps/<name>)")
    p.add_argument("--force", action="store_true",
                   help="rerun runs that already completed (the earlier result is replaced "
                        "only when the rerun completes)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs in parallel on this machine (default: one per GPU, else 1)")
    p.add_argument("--cell-timeout", type=float, default=3600,
                   help="seconds per cell before the run fails (0 = none; default 3600)")
    p.add_argument("--prepare-only", action="store_true",
                   help="inject parameters without executing; writes <out>/<name>.ipynb")
    p.add_argument("--report", action="store_true",
                   help="write <out>/index.html and an HTML copy of every executed notebook")
    p.add_argument("--grid", type=Path, help="YAML: a list of parameter dicts or a dict of lists")
    p.add_argument("--sweep", type=Path,
                   help="YAML sweep file: notebooks, parameters, grid, zip, seeds, resources")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where runs execute: this machine (default) or a Ray cluster")
    p.add_argument("--address", help="Ray cluster: auto (the one started on this machine by "
                   "'ray start') or HOST:PORT; default: start a local Ray for this batch")
    p.add_argument("--copy-back", action="store_true",
                   help="Ray: workers execute in a folder of their own and send the files "
                        "back (no storage shared with --out needed)")
    p.add_argument("--gpus", type=float, default=None,
                   help="GPUs per run (overrides the sweep's resources.gpus; 0 = none)")
    p.add_argument("--retries", type=int, default=None,
                   help="how often a run whose worker died is started again (default: the "
                        "sweep's retries, else 2)")
    p.add_argument("--collect-only", action="store_true",
                   help="run nothing: write the tables (metrics.csv, runs.csv, sweep.csv, "
                        "benchmark tables and figures) from the runs already in --out")
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


def _check_options(args: argparse.Namespace) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give at least 1")
    if args.retries is not None and args.retries < 0:
        raise UsageError(f"--retries {args.retries}: give 0 or more")
    if args.gpus is not None and args.gpus < 0:
        raise UsageError(f"--gpus {args.gpus:g}: give 0 or more")
    if args.sweep and (args.grid or args.notebooks):
        raise UsageError("--sweep names the notebooks and the grid; drop the notebooks and "
                         "--grid from the command line, or drop --sweep")
    if not args.sweep and not args.notebooks:
        raise UsageError("name the notebooks to run, or a --sweep file")
    if args.backend != "ray" and (args.address or args.copy_back):
        raise UsageError("--address and --copy-back are for --backend ray")
    if args.backend == "ray" and args.prepare_only:
        raise UsageError("--prepare-only executes nothing; drop --backend ray")
    if args.backend == "ray":
        require_ray()


def _plan_from_args(args: argparse.Namespace) -> tuple[list[NotebookRun], Path, Sweep | None]:
    _check_options(args)
    raw: dict[str, str] = {name: value for name, value in args.parameter}
    if args.profile:
        if raw.get("PROFILE", args.profile) != args.profile:
            raise UsageError(f"--profile {args.profile} contradicts -p PROFILE {raw['PROFILE']}")
        raw["PROFILE"] = args.profile
    sweep = load_sweep(args.sweep) if args.sweep else None
    if sweep is None:
        notebooks = unique_notebooks(args.notebooks)
        base: dict[str, Any] = {}
        grid = load_grid(args.grid) if args.grid else [{}]
        out = args.out or Path("runs") / raw.get("PROFILE", "teach")
    else:
        notebooks, base, grid = sweep.notebooks, sweep.parameters, sweep.runs
        swept = sorted({k for g in grid for k in g} & set(raw))
        if swept:
            raise UsageError(f"-p {', '.join(swept)}: swept in {sweep.path}; change it there")
        out = args.out or Path("runs") / "sweeps" / sweep.path.stem
    check_out(out)
    runs = plan(notebooks, base, grid, out, raw, args.prepare_only,
                fixed_are_defaults=sweep is not None)
    return runs, out, sweep


def make_backend(args: argparse.Namespace, resources: Resources) -> Backend:
    """The backend the command line asks for (see :mod:`mtlkit.batch.backends`)."""
    timeout = args.cell_timeout or None
    if args.prepare_only:
        return InlineBackend(timeout, prepare_only=True)
    if args.gpus is not None:
        resources = Resources(args.gpus, resources.cpus, resources.memory)
    if args.backend == "ray":
        return RayBackend(args.address, resources, args.copy_back, timeout)
    gpus = visible_gpus()
    per_run = (1.0 if gpus else 0.0) if resources.gpus is None else resources.gpus
    slots = gpu_slots(gpus, per_run)
    env = {"CUDA_VISIBLE_DEVICES": ""} if per_run == 0 and gpus else {}  # GPUs hidden
    if per_run > 0 and not gpus:
        print(f"note: each run asks for {per_run:g} GPU(s), but this machine shows none; "
              "runs use the CPU")
    jobs = args.jobs or len(slots) or 1
    if slots:
        jobs = min(jobs, len(slots))  # one run per slot at most
    if jobs == 1 and not slots:
        return InlineBackend(timeout, env)
    return LocalBackend(jobs, slots, timeout, env)


def write_tables(out: Path) -> None:
    """metrics.csv, runs.csv, sweep.csv and the benchmark tables and figures of ``out``."""
    # imported here: mtlkit.results imports torch, which the runner and the child processes
    # it spawns (they import this module) would otherwise load for nothing
    from mtlkit.batch.aggregate import collect

    print(f"metrics: {collect_metrics(out)}\nruns: {collect_runs(out)}")
    try:
        written = collect(out)
    except Exception as e:  # the runs are done and recorded; a table must not hide that
        print(f"nbrun: warning: could not aggregate {out}: {type(e).__name__}: {e}; rerun with "
              "--collect-only once fixed", file=sys.stderr)
        return
    for path in written:
        if path.name != "sweep.csv" and path.parent.name == "records":
            continue
        print(f"{'table' if path.suffix != '.png' else 'figure'}: {path}")


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
        runs, out, sweep = _plan_from_args(args)
    except UsageError as e:
        print(f"nbrun: error: {e}", file=sys.stderr)
        return 2
    warning = check_kernel()
    if warning:
        print(f"nbrun: warning: {warning}", file=sys.stderr)
    try:
        backend = None
        if not args.collect_only and (args.force or args.prepare_only
                                      or not all(map(is_done, runs))):
            backend = make_backend(args, sweep.resources if sweep else Resources())
        out.mkdir(parents=True, exist_ok=True)
        with locked(out):
            if not args.prepare_only:
                recover(out)
            todo = runs if args.force or args.prepare_only else [r for r in runs if not is_done(r)]
            for r in runs:
                if r not in todo and not args.collect_only:
                    print(f"= {r.label}  already completed (use --force to rerun)")
            if todo and not args.collect_only:
                retries = args.retries if args.retries is not None else (
                    sweep.retries if sweep else 2)
                try:
                    dispatch(todo, backend or make_backend(args, Resources()), retries,
                             progress=not args.no_progress)
                except KeyboardInterrupt:
                    print(f"nbrun: interrupted; completed runs are kept, the unfinished ones "
                          f"are in {out / ATTEMPTS}; run the same command again to finish",
                          file=sys.stderr)
                    return 130
            elif backend is not None:
                backend.close()
            if not args.prepare_only:
                tidy(out)
                write_tables(out)
            if args.report:
                print(f"report: {write_report(out)}")
    except UsageError as e:
        print(f"nbrun: error: {e}", file=sys.stderr)
        return 2
    if args.collect_only:
        return 0
    return 1 if _summary(out, todo, args.prepare_only) else 0


if __name__ == "__main__":
    sys.exit(main())
