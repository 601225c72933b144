"""Batch runner over papermill: ``python -m mtlkit.nbrun NOTEBOOK... [options]``.

It fixes what papermill alone gets wrong for this workbook:

* an unknown parameter name is an error that lists the valid names (papermill
  only warns), and every ``-p NAME VALUE`` is parsed as YAML (lists, numbers)
  and checked against the annotation in the notebook's ``parameters`` cell;
* output folders are created; each run writes ``<out>/<stem>/<notebook>.ipynb``
  and gets ``OUT_DIR=<out>/<stem>`` (absolute) for ``metrics.json``,
  ``claims.json`` and ``figures/``; with a grid, one sub-folder per parameter set;
* the kernel (``python3``) runs in the notebook's folder, with a per-cell
  timeout, saving after every cell so an interrupted run leaves a partial notebook;
* a run that completes writes ``_done.json``; a rerun skips it (same parameters,
  same notebook source) unless ``--force``; a failed run writes ``_error.json``,
  the others still run, and the runner exits non-zero at the end;
* several runs go to a local process pool (``--jobs``); afterwards every
  ``metrics.json`` under ``--out`` is collected into ``<out>/metrics.csv`` and,
  with ``--report``, ``<out>/index.html`` is written (:mod:`mtlkit.report`).

Examples::

    python -m mtlkit.nbrun notebooks/[0-9]*.ipynb --profile teach --out runs/teach --report
    python -m mtlkit.nbrun notebooks/00_*.ipynb -p SEEDS "[0, 1, 2]" --force
    python -m mtlkit.nbrun notebooks/*.ipynb --profile smoke --prepare-only \\
        --out runs/smoke-prepared
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import itertools
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DONE = "_done.json"
ERROR = "_error.json"
KERNEL = "python3"
PROFILES = ("smoke", "teach", "full")


class UsageError(ValueError):
    """A bad command line: unknown parameter, wrongly typed value, missing file."""


# ------------------------------------------------------------------ parameters
@dataclass
class Param:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    annotation: str | None
    default: Any
    help: str = ""


def load_notebook(path: str | Path) -> dict[str, Any]:
    """The notebook as a plain dict (nbformat 4 JSON)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parameters_cell(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first code cell tagged ``parameters`` (None if there is none)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
                "tags", []):
            return cell
    return None


def notebook_parameters(path: str | Path) -> dict[str, Param]:
    """Name -> :class:`Param` for every assignment in the ``parameters`` cell."""
    nb = load_notebook(path)
    cell = parameters_cell(nb)
    if cell is None:
        raise UsageError(f"{path}: no code cell tagged 'parameters'; see notebooks/_template.ipynb")
    src = cell_source(cell)
    lines = src.splitlines()
    out: dict[str, Param] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, ann, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            name, ann, value = node.targets[0].id, None, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        out[name] = Param(name, ann, default, comment)
    return out


def _type_ok(value: Any, ann: str) -> bool:
    """Does ``value`` fit the annotation (``str``, ``int``, ``list[int]``, ``str | None``)?"""
    ann = ann.replace(" ", "")
    if "|" in ann:
        return any(_type_ok(value, a) for a in ann.split("|"))
    if ann.startswith("Optional[") and ann.endswith("]"):
        return value is None or _type_ok(value, ann[9:-1])
    m = re.fullmatch(r"(list|tuple|List|Tuple)\[(.+)\]", ann)
    if m:
        return isinstance(value, (list, tuple)) and all(_type_ok(v, m.group(2)) for v in value)
    m = re.fullmatch(r"(dict|Dict)\[.+\]", ann)
    if m:
        return isinstance(value, dict)
    checks = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, (list, tuple)),
        "List": lambda v: isinstance(v, (list, tuple)),
        "tuple": lambda v: isinstance(v, (list, tuple)),
        "dict": lambda v: isinstance(v, dict),
        "Dict": lambda v: isinstance(v, dict),
        "None": lambda v: v is None,
    }
    return checks.get(ann, lambda v: True)(value)


def parse_value(raw: str) -> Any:
    """A ``-p`` value parsed as YAML: ``[0, 1]`` is a list, ``3`` an int, ``cpu`` a string."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise UsageError(f"cannot parse {raw!r} as YAML: {e}") from e


def coerce(name: str, value: Any, param: Param, raw: str | None = None) -> Any:
    """Check ``value`` against the parameter's annotation; raise a clear :class:`UsageError`.

    A ``str`` parameter given a YAML number or boolean keeps the text as typed
    (``-p DATA_DIR 2024`` is the string ``"2024"``); ``float`` accepts ints.
    """
    ann = param.annotation or (type(param.default).__name__ if param.default is not None else None)
    if ann and ann.replace(" ", "") == "str" and isinstance(value, (int, float, bool)):
        value = raw if raw is not None else str(value)
    if ann and ann.replace(" ", "") == "float" and isinstance(value, int) and not isinstance(
            value, bool):
        value = float(value)
    if ann and not _type_ok(value, ann):
        hint = f"  ({param.help})" if param.help else ""
        raise UsageError(
            f"parameter {name} expects {ann}, got {type(value).__name__} {value!r}; "
            f"e.g. -p {name} {_example(param.default)}{hint}")
    if name == "PROFILE" and value not in PROFILES:
        raise UsageError(f"PROFILE={value!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return value


def _example(default: Any) -> str:
    text = json.dumps(default) if not isinstance(default, str) else default
    return f"'{text}'" if any(c in text for c in " []{}") else (text or "''")


def validate(path: Path, given: Mapping[str, Any], raw: Mapping[str, str] | None = None
             ) -> dict[str, Any]:
    """The parameters for one notebook, checked against its ``parameters`` cell."""
    params = notebook_parameters(path)
    unknown = [k for k in given if k not in params]
    if unknown:
        valid = "\n".join(f"  {p.name}: {p.annotation or '?'} = {p.default!r}"
                          + (f"  # {p.help}" if p.help else "") for p in params.values())
        raise UsageError(f"{path.name}: unknown parameter(s) {', '.join(unknown)}. "
                         f"Valid parameters:\n{valid}")
    raw = raw or {}
    try:
        return {k: coerce(k, v, params[k], raw.get(k)) for k, v in given.items()}
    except UsageError as e:
        raise UsageError(f"{path.name}: {e}") from None


def expand_grid(spec: Any) -> list[dict[str, Any]]:
    """A grid YAML: a list of parameter dicts, or a dict of lists (cartesian product).

    In the dict form a value that is not a list is held fixed; to sweep a list-valued
    parameter give a list of lists (``SEEDS: [[0], [0, 1]]``).
    """
    if spec is None:
        return [{}]
    if isinstance(spec, list):
        if not all(isinstance(d, dict) for d in spec):
            raise UsageError("a grid list must hold parameter dicts, e.g. - {LR: 0.1}")
        return [dict(d) for d in spec] or [{}]
    if isinstance(spec, dict):
        keys = list(spec)
        values = [v if isinstance(v, list) else [v] for v in spec.values()]
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    raise UsageError("a grid must be a list of parameter dicts or a dict of lists")


# ------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One execution: a notebook with a parameter set."""

    notebook: Path
    params: dict[str, Any]
    run_dir: Path
    output: Path
    label: str
    source_hash: str = ""
    result: dict[str, Any] = field(default_factory=dict)


def source_hash(path: Path) -> str:
    """sha256 over the cells' sources and types (outputs and metadata ignored)."""
    nb = load_notebook(path)
    text = json.dumps([[c.get("cell_type"), cell_source(c)] for c in nb.get("cells", [])])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_label(params: Mapping[str, Any]) -> str:
    """A folder name for a parameter set, e.g. ``LR=0.1,SEEDS=0-1``."""
    parts = [f"{k}={_slug(v)}" for k, v in sorted(params.items())]
    label = ",".join(parts) or "default"
    if len(label) > 80:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
        label = label[:60] + "-" + digest.hexdigest()[:8]
    return label


def _slug(v: Any) -> str:
    text = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def plan(notebooks: Sequence[Path], base: Mapping[str, Any], grid: list[dict[str, Any]],
         out: Path, raw: Mapping[str, str], prepare_only: bool = False) -> list[Run]:
    """Validate every parameter set for every notebook and lay out the runs."""
    runs = []
    for path in notebooks:
        declared = notebook_parameters(path)
        for g in grid:
            given = {**base, **g}
            params = validate(path, given, {k: v for k, v in raw.items() if k not in g})
            stem = path.stem
            label = run_label(g) if len(grid) > 1 else ""
            if prepare_only:
                name = f"{stem}__{label}" if label else stem
                run_dir, output = out / "_out" / name, out / f"{name}.ipynb"
            else:
                run_dir = out / stem / label if label else out / stem
                output = run_dir / path.name
            if "OUT_DIR" in declared:
                params["OUT_DIR"] = str(run_dir.resolve())
            runs.append(Run(path.resolve(), params, run_dir.resolve(), output.resolve(),
                            f"{stem}{'/' + label if label else ''}", source_hash(path)))
    return runs


def is_done(run: Run) -> bool:
    """A completed marker with the same parameters and notebook source."""
    marker = run.run_dir / DONE
    if not marker.exists():
        return False
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return (done.get("status") == "ok" and done.get("parameters") == _jsonable(run.params)
            and done.get("source_hash") == run.source_hash and run.output.exists())


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def execute(run: Run, cell_timeout: float | None = None, prepare_only: bool = False,
            kernel: str = KERNEL) -> dict[str, Any]:
    """Run (or, with ``prepare_only``, parameterise) one notebook; never raises."""
    import papermill as pm

    # our own parser has validated the parameters; papermill's is stricter about comments
    # ("Unable to parse line") and would warn about parameters it failed to parse
    logging.getLogger("papermill").setLevel(logging.ERROR)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    run.output.parent.mkdir(parents=True, exist_ok=True)
    for stale in (DONE, ERROR):
        (run.run_dir / stale).unlink(missing_ok=True)
    record = {"notebook": run.notebook.name, "label": run.label,
              "parameters": _jsonable(run.params), "source_hash": run.source_hash,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(run.notebook), str(run.output), parameters=run.params, kernel_name=kernel,
            cwd=str(run.notebook.parent), prepare_only=prepare_only, progress_bar=False,
            request_save_on_cell_execute=True,
            execution_timeout=cell_timeout if cell_timeout else None)
    except Exception as e:  # record and go on with the other runs
        record.update(status="failed", wall_s=round(time.perf_counter() - t0, 2),
                      error=_describe(e))
        if not prepare_only:
            (run.run_dir / ERROR).write_text(json.dumps(record, indent=1))
        return record
    record.update(status="prepared" if prepare_only else "ok",
                  wall_s=round(time.perf_counter() - t0, 2))
    if not prepare_only:
        (run.run_dir / DONE).write_text(json.dumps(record, indent=1))
    return record


def _describe(e: BaseException) -> str:
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        cell = getattr(e, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (cell [{cell}])" if cell is not None else "")
    return "".join(traceback.format_exception_only(type(e), e)).strip()


def _execute_star(args: tuple[Run, float | None, bool]) -> dict[str, Any]:
    return execute(*args)


def run_all(runs: Sequence[Run], jobs: int = 1, cell_timeout: float | None = None,
            prepare_only: bool = False, progress: bool = True) -> list[dict[str, Any]]:
    """Execute runs, ``jobs`` at a time, with a tqdm bar; results in input order."""
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

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
            futures = {ex.submit(_execute_star, t): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    bar.close()
    return results


# ---------------------------------------------------------------- collection
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


def run_info(run_dir: Path) -> dict[str, Any]:
    """The marker (``_done.json`` / ``_error.json``) of a run folder, if any."""
    for name in (DONE, ERROR):
        if (run_dir / name).exists():
            try:
                return json.loads((run_dir / name).read_text())
            except json.JSONDecodeError:
                pass
    return {}


def collect_metrics(out: str | Path) -> Path:
    """Every ``metrics.json`` under ``out`` as one tidy CSV ``out/metrics.csv``.

    Columns: notebook, run (folder relative to ``out``), parameters (JSON, without OUT_DIR), key
    (nested dicts flattened with dots), value (lists and strings as JSON).
    """
    out = Path(out)
    rows = []
    for path in sorted(out.rglob("metrics.json")):
        run_dir = path.parent
        info = run_info(run_dir)
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            metrics = {"_unreadable": str(e)}
        notebook = info.get("notebook") or next(
            (p.name for p in run_dir.glob("*.ipynb")), run_dir.name)
        params = json.dumps({k: v for k, v in info.get("parameters", {}).items()
                             if k != "OUT_DIR"}, sort_keys=True)  # `run` names the folder
        for key, value in flatten(metrics).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                value = json.dumps(value)
            rows.append([notebook, run_dir.relative_to(out).as_posix(), params, key, value])
    target = out / "metrics.csv"
    with target.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "run", "parameters", "key", "value"])
        w.writerows(rows)
    return target


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
        epilog="Parameter values are YAML: -p SEEDS '[0, 1, 2]' -p LR 0.01 -p DEVICE cpu")
    p.add_argument("notebooks", nargs="+", type=Path, help="notebook files (.ipynb)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="set a parameter (value parsed as YAML)")
    p.add_argument("--profile", choices=PROFILES, help="shorthand for -p PROFILE P")
    p.add_argument("--out", type=Path, help="output folder (default runs/<profile>)")
    p.add_argument("--force", action="store_true", help="rerun runs that already completed")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (default 1)")
    p.add_argument("--cell-timeout", type=float, default=3600,
                   help="seconds per cell before the run fails (0 = none; default 3600)")
    p.add_argument("--prepare-only", action="store_true",
                   help="inject parameters without executing; writes <out>/<stem>.ipynb")
    p.add_argument("--report", action="store_true", help="write <out>/index.html")
    p.add_argument("--grid", type=Path, help="YAML: a list of parameter dicts or a dict of lists")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def _given(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    raw: dict[str, str] = {name: value for name, value in args.parameter}
    if args.profile:
        if raw.get("PROFILE", args.profile) != args.profile:
            raise UsageError(f"--profile {args.profile} contradicts -p PROFILE {raw['PROFILE']}")
        raw["PROFILE"] = args.profile
    return {k: parse_value(v) for k, v in raw.items()}, raw


def main(argv: Iterable[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 a run failed, 2 usage)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        missing = [str(p) for p in args.notebooks if not p.is_file()]
        if missing:
            raise UsageError(f"no such notebook: {', '.join(missing)}")
        given, raw = _given(args)
        grid = expand_grid(yaml.safe_load(args.grid.read_text()) if args.grid else None)
        out = args.out or Path("runs") / str(given.get("PROFILE", "teach"))
        runs = plan(args.notebooks, given, grid, out, raw, args.prepare_only)
    except (UsageError, OSError, yaml.YAMLError) as e:
        print(f"nbrun: error: {e}", file=sys.stderr)
        return 2
    warning = check_kernel()
    if warning:
        print(f"nbrun: warning: {warning}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    todo = runs if args.force or args.prepare_only else [r for r in runs if not is_done(r)]
    for r in runs:
        if r not in todo:
            print(f"= {r.label}  already completed (use --force to rerun)")
    results = run_all(todo, args.jobs, args.cell_timeout or None, args.prepare_only,
                      progress=not args.no_progress)
    failed = [r for r, res in zip(todo, results) if res.get("status") == "failed"]
    if not args.prepare_only:
        print(f"metrics: {collect_metrics(out)}")
    if args.report:
        from mtlkit.report import write_report

        print(f"report: {write_report(out)}")
    for r in failed:
        print(f"FAILED {r.label}: {r.result.get('error')}\n  see {r.output}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
