"""Sweep files: a whole grid of notebook runs in one YAML file (``nbrun --sweep FILE``).

::

    notebooks: [../../notebooks/51_benchmark_dense_prediction.ipynb]  # relative to this file
    parameters: {PROFILE: smoke}        # the same for every run
    grid:                               # every combination (cartesian product)
      METHODS: [[UW, DWA], [MGDA-UB, PCGrad]]
    zip:                                # taken together, item by item (equal lengths)
      EPOCHS: [1, 2]
      BATCH_SIZE: [8, 16]
    seeds: [0, 1, 2]                    # one run per seed: SEEDS = [s]
    resources: {gpus: 1, cpus: 2, memory: 8GiB}   # what each run asks of its worker
    retries: 2                          # a run whose worker died is retried this often

Runs: every notebook x every grid combination x every zipped item x every seed. Only
``notebooks`` is required. Every key and every value is checked before anything runs: an
unknown key, a value of the wrong type or a parameter a notebook does not declare is a
:class:`~mtlkit.batch.params.UsageError` naming the file and the line.
"""

from __future__ import annotations

import glob
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlkit.batch.params import UsageError, check_plain, read_yaml, validate

KEYS = {
    "notebooks": "notebook files or glob patterns, relative to the sweep file",
    "parameters": "parameters held fixed for every run",
    "grid": "parameter: list of values; every combination runs",
    "zip": "parameter: list of values, all lists of one length, taken item by item",
    "seeds": "list of seeds; one run per seed with SEEDS = [seed]",
    "resources": "what each run asks for: gpus, cpus, memory",
    "retries": "how often a run whose worker died is started again (default 2)",
    "description": "free text",
}
RESOURCE_KEYS = {"gpus": "GPUs per run (0 = none; a fraction shares one GPU; default: "
                         "one per run where there are GPUs, none on Ray)",
                 "cpus": "CPU cores per run (default 1)",
                 "memory": "memory per run: bytes, or a size such as 512MiB, 8GB"}
SEEDS = "SEEDS"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}


@dataclass
class Resources:
    """What one run asks of the machine or worker that executes it."""

    gpus: float | None = None  # None: one per run on a machine with GPUs, else none
    cpus: float = 1.0
    memory: int | None = None  # bytes

    def ray_options(self) -> dict[str, Any]:
        """The request as Ray task options (``num_cpus``, ``num_gpus``, ``memory``)."""
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus or 0}
        if self.memory:
            opts["memory"] = self.memory
        return opts


@dataclass
class Sweep:
    """A parsed, checked sweep file."""

    path: Path
    notebooks: list[Path]
    parameters: dict[str, Any]
    runs: list[dict[str, Any]]  # one parameter set per run (grid x zip x seeds)
    resources: Resources = field(default_factory=Resources)
    retries: int = 2
    description: str = ""


class _Where:
    """Error messages that name the sweep file and the line of a key."""

    def __init__(self, path: Path, lines: Mapping[tuple[Any, ...], int]):
        self.path, self.lines = path, lines

    def __call__(self, *key: Any) -> str:
        while key and key not in self.lines:
            key = key[:-1]
        line = self.lines.get(key) if key else None
        return f"sweep {self.path}" + (f", line {line}" if line else "")

    def error(self, key: tuple[Any, ...], text: str) -> UsageError:
        return UsageError(f"{self(*key)}: {text}")


def parse_memory(value: Any) -> int:
    """Bytes from an int or a size text (``512MiB``, ``8GB``, ``1.5 GiB``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS or isinstance(value, bool) or float(m.group(1)) <= 0:
        raise UsageError(f"memory {value!r} is not a size; write e.g. 8GiB, 512MB or a number "
                         "of bytes")
    return int(float(m.group(1)) * _UNITS[unit])


def _number(value: Any, name: str, minimum: float, strict: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise UsageError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def parse_resources(spec: Any, where: _Where) -> Resources:
    """The ``resources`` mapping, checked."""
    if spec is None:
        return Resources()
    if not isinstance(spec, dict):
        raise where.error(("resources",), "resources must be a mapping, e.g. "
                          "{gpus: 1, cpus: 2, memory: 8GiB}")
    _unknown(spec, RESOURCE_KEYS, where, ("resources",))
    res = Resources()
    for key in ("gpus", "cpus"):
        if key not in spec:
            continue
        try:
            value = _number(spec[key], key, 0, strict=key == "cpus")
            if value > 1 and not value.is_integer():
                raise UsageError(f"{key} {spec[key]!r}: more than one must be a whole number")
        except UsageError as e:
            raise where.error(("resources", key), str(e)) from None
        setattr(res, key, value)
    if "memory" in spec:
        try:
            res.memory = parse_memory(spec["memory"])
        except UsageError as e:
            raise where.error(("resources", "memory"), str(e)) from None
    return res


def _unknown(spec: Mapping[str, Any], known: Mapping[str, str], where: _Where,
             at: tuple[Any, ...] = ()) -> None:
    for key in spec:
        if key not in known:
            valid = ", ".join(known)
            raise where.error((*at, key), f"unknown key {key!r}" + (f" under {at[-1]}" if at
                                                                   else "")
                              + f"; valid keys: {valid}")


def _notebooks(spec: Any, path: Path, where: _Where) -> list[Path]:
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        raise where.error(("notebooks",), "notebooks must be a list of notebook files, e.g. "
                          "[../notebooks/11_random_loss_weighting.ipynb]")
    found: list[Path] = []
    for i, pattern in enumerate(items):
        full = path.parent / pattern
        hits = sorted(Path(p) for p in glob.glob(str(full))) if glob.has_magic(pattern) else (
            [full] if full.is_file() else [])
        if not hits:
            raise where.error(("notebooks", i), f"no notebook matches {pattern!r} (paths are "
                              f"relative to the sweep file's folder, {path.parent})")
        found += [h for h in hits if h.resolve() not in {f.resolve() for f in found}]
    return found


def _axis(spec: Any, name: str, where: _Where) -> dict[str, list[Any]]:
    """``grid`` or ``zip``: parameter -> a non-empty list of values."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise where.error((name,), f"{name} must be a mapping of parameter: [values, ...]")
    for key, values in spec.items():
        if not isinstance(values, list) or not values:
            raise where.error((name, key), f"{name} {key}: give a non-empty list of values "
                              f"(to sweep a list parameter, a list of lists: [[0], [0, 1]])")
    if name == "zip" and len({len(v) for v in spec.values()}) > 1:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in spec.items())
        raise where.error((name,), f"zip lists must have one length ({sizes})")
    return dict(spec)


def _one_line(e: UsageError) -> str:
    """A validation error on one line (the list of valid parameters as their names)."""
    first, *rest = str(e).splitlines()
    head = "Valid parameters:"
    if rest and first.endswith(head):
        names = ", ".join(line.split(":")[0].strip() for line in rest)
        return f"{first[:-len(head)]}valid: {names}"
    return first


def _check_values(notebooks: list[Path], fixed: Mapping[str, Any],
                  axes: Mapping[str, dict[str, list[Any]]], where: _Where) -> None:
    """Every value against every notebook's parameters cell, one at a time, so that an error
    names the line of the value."""
    for nb in notebooks:
        for key, value in fixed.items():
            try:
                validate(nb, {key: value})
            except UsageError as e:
                raise where.error(("parameters", key), _one_line(e)) from None
        for name, axis in axes.items():
            for key, values in axis.items():
                for i, value in enumerate(values):
                    try:
                        validate(nb, {key: value})
                    except UsageError as e:
                        raise where.error((name, key, i), _one_line(e)) from None


def _seeds(spec: Any, where: _Where) -> list[list[int]]:
    if spec is None:
        return []
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = [spec]
    if (not isinstance(spec, list) or not spec
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec)):
        raise where.error(("seeds",), f"seeds must be a list of integers, got {spec!r}")
    if len(set(spec)) != len(spec):
        raise where.error(("seeds",), f"seeds {spec} name a seed twice")
    return [[s] for s in spec]


def expand(grid: Mapping[str, list[Any]], zipped: Mapping[str, list[Any]],
           seeds: list[list[int]]) -> list[dict[str, Any]]:
    """The runs: every grid combination x every zipped item x every seed (seeds innermost)."""
    combos = [dict(zip(grid, c)) for c in itertools.product(*grid.values())] or [{}]
    n = len(next(iter(zipped.values()))) if zipped else 1
    items = [{k: v[i] for k, v in zipped.items()} for i in range(n)] if zipped else [{}]
    seed_sets = [{SEEDS: s} for s in seeds] or [{}]
    return [{**c, **z, **s} for c in combos for z in items for s in seed_sets]


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (see the module docstring); writes nothing."""
    path = Path(path)
    spec, lines = read_yaml(path, "sweep")
    where = _Where(path, lines)
    if not isinstance(spec, dict):
        raise where.error((), "a sweep file is a mapping with at least 'notebooks'; keys: "
                          + ", ".join(KEYS))
    _unknown(spec, KEYS, where)
    try:
        check_plain(spec, "value")
    except UsageError as e:
        raise where.error((), str(e)) from None
    if "notebooks" not in spec:
        raise where.error((), "no 'notebooks' key: name the notebooks to run")
    notebooks = _notebooks(spec["notebooks"], path, where)
    fixed = spec.get("parameters") or {}
    if not isinstance(fixed, dict):
        raise where.error(("parameters",), "parameters must be a mapping of NAME: value")
    axes = {"grid": _axis(spec.get("grid"), "grid", where),
            "zip": _axis(spec.get("zip"), "zip", where)}
    seeds = _seeds(spec.get("seeds"), where)
    _no_overlap(fixed, axes, bool(seeds), where)
    _check_values(notebooks, fixed, axes, where)
    retries = spec.get("retries", 2)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise where.error(("retries",), f"retries must be an integer >= 0, got {retries!r}")
    description = spec.get("description") or ""
    return Sweep(path, notebooks, dict(fixed), expand(axes["grid"], axes["zip"], seeds),
                 parse_resources(spec.get("resources"), where), retries, str(description))


def _no_overlap(fixed: Mapping[str, Any], axes: Mapping[str, dict[str, list[Any]]],
                seeds: bool, where: _Where) -> None:
    """A parameter is set in one place only (``seeds`` sets SEEDS)."""
    owner: dict[str, tuple[str, ...]] = {k: ("parameters", k) for k in fixed}
    if seeds:
        owner_seeds = ("seeds",)
        if SEEDS in owner:
            raise where.error(owner[SEEDS], "SEEDS is set by 'seeds'; remove one of the two")
        owner[SEEDS] = owner_seeds
    for name, axis in axes.items():
        for key in axis:
            if key in owner:
                raise where.error((name, key), f"{key} is also set under "
                                  f"{owner[key][0]}; set each parameter in one place")
            owner[key] = (name, key)
