"""Notebook parameters for the batch runner: read, parse, check, expand into a grid.

A notebook declares its parameters in the code cell tagged ``parameters`` (literal,
annotated assignments). A value given on the command line (``-p NAME TEXT``) or in a grid
file becomes a plain literal (None, bool, int, float, str, list, dict with str keys) and is
checked against the annotation; papermill then writes it into the notebook as a Python
literal. Anything else (a YAML ``!!binary``, ``!!set``, timestamp, ...) is refused: papermill
would paste its ``str()`` between quotes unescaped, i.e. run it as code.

Parsing is YAML with the number forms people type (``1e-5``, ``1E5``, ``.5``, ``-3``,
``1_000``, ``0x1f``, ``inf``, ``nan``) and only ``true``/``false`` as booleans; a ``str``
parameter takes the text exactly as typed.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtlkit.batch.runs import cell_source, load_notebook
from mtlkit.profiles import PROFILES

RUNNER_SET = ("OUT_DIR",)  # set by the runner for every run, never by the user


class UsageError(ValueError):
    """A bad command line: unknown parameter, wrongly typed value, missing or broken file."""


@dataclass
class Param:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    annotation: str | None
    default: Any
    help: str = ""


# ----------------------------------------------------------------- reading
def read_notebook(path: str | Path) -> dict[str, Any]:
    """The notebook's JSON; a file that is not a notebook is a :class:`UsageError`."""
    try:
        nb = load_notebook(path)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path} is not a notebook: invalid JSON at line {e.lineno}, "
                         f"column {e.colno} ({e.msg})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a notebook: not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read notebook {path}: {e.strerror or e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise UsageError(f"{path} is not a notebook: no 'cells' list in its JSON")
    return nb


def parameters_cell(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first code cell tagged ``parameters`` (None if there is none)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
                "tags", []):
            return cell
    return None


def notebook_parameters(path: str | Path) -> dict[str, Param]:
    """Name -> :class:`Param` for every assignment in the ``parameters`` cell."""
    cell = parameters_cell(read_notebook(path))
    if cell is None:
        raise UsageError(f"{path}: no code cell tagged 'parameters'; see notebooks/_template.ipynb")
    src = cell_source(cell)
    try:
        body = ast.parse(src).body
    except SyntaxError as e:
        raise UsageError(f"{path}: the parameters cell is not valid Python "
                         f"(line {e.lineno}: {e.msg})") from None
    lines = src.splitlines()
    out: dict[str, Param] = {}
    for node in body:
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


def defaults(params: Mapping[str, Param]) -> dict[str, Any]:
    """The declared default of every parameter the runner does not set itself (as plain
    data: a default that is no plain literal, e.g. a set, is represented by its repr)."""
    def plain(v: Any) -> Any:
        try:
            return check_plain(v, "default")
        except UsageError:
            return repr(v)

    return {k: plain(p.default) for k, p in params.items() if k not in RUNNER_SET}


# ----------------------------------------------------------------- parsing
_D = r"[0-9](?:_?[0-9])*"
_E = r"(?:[eE][-+]?[0-9]+)"
_INT = re.compile(r"^[-+]?(?:0|[1-9](?:_?[0-9])*|0x[0-9a-fA-F](?:_?[0-9a-fA-F])*"
                  r"|0o[0-7](?:_?[0-7])*|0b[01](?:_?[01])*)$")
_FLOAT = re.compile(rf"^[-+]?(?:{_D}\.(?:{_D})?{_E}?|\.{_D}{_E}?|{_D}{_E}"
                    r"|\.?(?:inf|Inf|INF|infinity|Infinity)|\.?(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_TYPED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
          "tag:yaml.org,2002:timestamp"}


class _Loader(yaml.SafeLoader):
    """YAML with the number forms people type (1e-5, .5, 1_000, inf) and no timestamps."""

    yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag not in _TYPED]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    return int(loader.construct_scalar(node), 0)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node))
    return float(re.sub(r"^([-+]?)\.(?=[a-zA-Z])", r"\1", text))  # ".inf" -> "inf"


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


for _tag, _rx, _first in (("bool", _BOOL, "tTfF"), ("int", _INT, "-+0123456789"),
                          ("float", _FLOAT, "-+.0123456789iInN")):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", _rx, list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def load_yaml(text: str) -> Any:
    """YAML text as plain data (see the module docstring for the number forms)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def check_plain(value: Any, where: str) -> Any:
    """``value`` if it is made only of None, bool, int, float, str, lists and str-keyed dicts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [check_plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: check_plain(v, where) for k, v in value.items()}
    kind = "a mapping with non-string keys" if isinstance(value, dict) else type(value).__name__
    raise UsageError(f"{where}: {kind} is not a parameter value; use numbers, strings, true/false, "
                     "null, lists and mappings with string keys")


def parse_value(raw: str) -> Any:
    """A ``-p`` value parsed as YAML: ``[0, 1]`` is a list, ``1e-5`` a float, ``cpu`` a string."""
    try:
        value = load_yaml(raw)
    except (yaml.YAMLError, ValueError) as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"cannot parse {raw!r} as a value ({problem}); quote strings, "
                         f"write lists as '[1, 2]'") from None
    return check_plain(value, f"value {raw!r}")


# ---------------------------------------------------------------- checking
def _alternatives(ann: str) -> list[str]:
    """Top-level alternatives of an annotation: ``str | None`` -> [str, None]."""
    ann = ann.replace(" ", "")
    if ann.startswith("Optional[") and ann.endswith("]"):
        return [ann[9:-1], "None"]
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(ann):
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            parts.append(ann[start:i])
            start = i + 1
    return [*parts, ann[start:]]


def type_ok(value: Any, ann: str) -> bool:
    """Does ``value`` fit the annotation (``str``, ``int``, ``list[int]``, ``str | None``)?"""
    alts = _alternatives(ann)
    if len(alts) > 1:
        return any(type_ok(value, a) for a in alts)
    ann = alts[0]
    m = re.fullmatch(r"(list|tuple|List|Tuple)\[(.+)\]", ann)
    if m:
        return isinstance(value, (list, tuple)) and all(type_ok(v, m.group(2)) for v in value)
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


def _annotation(param: Param) -> str | None:
    if param.annotation:
        return param.annotation.replace(" ", "")
    return type(param.default).__name__ if param.default is not None else None


def from_text(name: str, raw: str, param: Param) -> Any:
    """The value of ``-p NAME RAW``: a ``str`` parameter keeps the text exactly as typed
    (``-p DATA_DIR 2024`` is ``"2024"``); ``str | None`` reads ``null``/``~`` as None."""
    ann = _annotation(param)
    if ann and "str" in _alternatives(ann):
        try:
            parsed = parse_value(raw)
        except UsageError:
            return coerce(name, raw, param)
        keep = not isinstance(parsed, str) and type_ok(parsed, ann)
        return coerce(name, parsed if keep else raw, param)
    return coerce(name, parse_value(raw), param)


def coerce(name: str, value: Any, param: Param) -> Any:
    """Check ``value`` against the parameter's annotation; raise a clear :class:`UsageError`.

    A ``str`` parameter given a number or boolean (from a grid file) gets its text;
    ``float`` accepts ints, ``int`` accepts floats with an integral value (``1e3``).
    """
    value = check_plain(value, f"parameter {name}")
    ann = _annotation(param)
    if ann == "str" and isinstance(value, (int, float, bool)):
        value = json.dumps(value) if isinstance(value, bool) else str(value)
    if ann == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (ann == "int" and isinstance(value, float) and math.isfinite(value)
            and value.is_integer()):
        value = int(value)
    if ann and not type_ok(value, ann):
        hint = f"  ({param.help})" if param.help else ""
        raise UsageError(
            f"parameter {name} expects {param.annotation or ann}, got {type(value).__name__} "
            f"{value!r}; e.g. -p {name} {_example(param.default)}{hint}")
    if name == "PROFILE" and value not in PROFILES:
        raise UsageError(f"PROFILE={value!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return value


def _example(default: Any) -> str:
    text = json.dumps(default) if not isinstance(default, str) else default
    return f"'{text}'" if any(c in text for c in " []{}") else (text or "''")


def validate(path: Path, given: Mapping[str, Any], raw: Mapping[str, str] | None = None
             ) -> dict[str, Any]:
    """The parameters for one notebook, checked against its ``parameters`` cell.

    ``given`` holds values (from a grid file or code), ``raw`` command-line texts; a name in
    both takes the text.
    """
    params = notebook_parameters(path)
    raw = dict(raw or {})
    names = [*given, *(k for k in raw if k not in given)]
    unknown = [k for k in names if k not in params]
    if unknown:
        valid = "\n".join(f"  {p.name}: {p.annotation or '?'} = {p.default!r}"
                          + (f"  # {p.help}" if p.help else "") for p in params.values())
        raise UsageError(f"{path.name}: unknown parameter(s) {', '.join(unknown)}. "
                         f"Valid parameters:\n{valid}")
    fixed = [k for k in names if k in RUNNER_SET]
    if fixed:
        raise UsageError(f"{path.name}: {', '.join(fixed)} is set by the runner (each run's own "
                         "folder under --out); choose the folder with --out")
    try:
        return {k: from_text(k, raw[k], params[k]) if k in raw else coerce(k, given[k], params[k])
                for k in names}
    except UsageError as e:
        raise UsageError(f"{path.name}: {e}") from None


# -------------------------------------------------------------------- grids
def expand_grid(spec: Any) -> list[dict[str, Any]]:
    """A grid: a list of parameter dicts, or a dict of lists (cartesian product).

    In the dict form a value that is not a list is held fixed; to sweep a list-valued
    parameter give a list of lists (``SEEDS: [[0], [0, 1]]``). ``None`` means no grid.
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


def load_grid(path: Path) -> list[dict[str, Any]]:
    """The parameter sets of a grid file; errors name the file (and the line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read grid {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        spec = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UsageError(f"grid {path}{where}: {problem}") from None
    except ValueError as e:  # a number the constructors reject
        raise UsageError(f"grid {path}: {e}") from None
    try:
        check_plain(spec, f"grid {path}")
        grid = expand_grid(spec)
    except UsageError as e:
        raise UsageError(f"grid {path}: {e}" if str(path) not in str(e) else str(e)) from None
    if spec is None or spec == {} or spec == [] or not grid:
        raise UsageError(f"grid {path} holds no parameter sets; write e.g. 'LR: [0.1, 0.01]'")
    return grid
