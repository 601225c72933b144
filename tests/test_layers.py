"""The package's structure: layers, no import circle, no private name used across modules.

Every module of ``mtlkit`` belongs to one layer of :data:`LAYERS` (the README's
*Architecture* section lists them); a module imports only from its own layer or the layers
below.  Imports are read with ``ast`` from the source, including imports inside functions
(a lazy import is still a dependency).  The core-package rules of the engine and the
strategies (what ``engine``, ``weighting`` and ``arch`` may import from each other) are in
``tests/test_layers_core.py``.
"""

from __future__ import annotations

import ast
import fnmatch
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mtlkit"

#: bottom to top; a module may import from its own layer and the layers below it only
LAYERS: list[tuple[str, list[str]]] = [
    ("foundation", ["mtlkit", "mtlkit.utils", "mtlkit.profiles", "mtlkit.registry"]),
    ("data and building blocks", ["mtlkit.data", "mtlkit.data.*", "mtlkit.encoders",
                                  "mtlkit.encoders.*", "mtlkit.losses", "mtlkit.metrics",
                                  "mtlkit.results", "mtlkit.plots",
                                  "mtlkit.verdicts", "mtlkit.shipped"]),
    ("models and strategies", ["mtlkit.arch", "mtlkit.arch.*", "mtlkit.weighting",
                               "mtlkit.weighting.*"]),
    ("engine", ["mtlkit.engine", "mtlkit.engine.*", "mtlkit.grads", "mtlkit.bilevel"]),
    ("training pieces and theory", ["mtlkit.training", "mtlkit.training.*",
                                    "mtlkit.checkpoints", "mtlkit.theory", "mtlkit.theory.*"]),
    ("trainer", ["mtlkit.trainer"]),
    ("experiments and paper protocols", ["mtlkit.experiments", "mtlkit.protocols",
                                         "mtlkit.protocols.*"]),
    ("notebook helpers and batch runner", ["mtlkit.nb", "mtlkit.nbrun", "mtlkit.batch",
                                           "mtlkit.batch.*"]),
]
#: the front ends: nothing below them may import these
FRONT_ENDS = ("mtlkit.nb", "mtlkit.nbrun", "mtlkit.batch")

#: known faults allowed for now (each entry must still be a fault, so a fixed one is noticed);
#: empty since the engine package replaced grads/bilevel's circle
PENDING_IMPORTS: set[tuple[str, str]] = set()
PENDING_PRIVATE: set[tuple[str, str]] = set()
PENDING_CIRCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The mtlkit module ``name`` denotes, or its nearest package; None outside mtlkit."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports(module: str) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` of every mtlkit import in
    ``module`` (module-level and inside functions; relative imports resolved)."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("mtlkit")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if base.startswith("mtlkit"):
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub, "", node.lineno) if sub in modules()
                               else (base, a.name, node.lineno))
    return out


def edges(module: str) -> set[str]:
    """The mtlkit modules ``module`` depends on (its own parent packages left out: they are
    always imported first)."""
    own = {module.rsplit(".", k)[0] for k in range(module.count(".") + 1)}
    return {m for target, _, _ in imports(module) if (m := resolve(target)) not in own | {None}}


def layer_of(module: str) -> int:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py "
                         "and to the README's Architecture section")


def test_every_module_has_a_layer():
    for m in modules():
        layer_of(m)


def test_no_import_from_a_higher_layer():
    bad = []
    for m in modules():
        for target in edges(m):
            if layer_of(target) > layer_of(m) and (m, target) not in PENDING_IMPORTS:
                bad.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {target} "
                           f"({LAYERS[layer_of(target)][0]})")
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)
    for m, target in PENDING_IMPORTS:
        assert target in edges(m), f"{m} no longer imports {target}: drop it from PENDING"


def test_the_core_never_imports_the_front_ends():
    front = [m for m in modules() if m.startswith(FRONT_ENDS)]
    for m in modules():
        if m not in front:
            assert not edges(m) & set(front), f"{m} imports {sorted(edges(m) & set(front))}"


def circles() -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in modules():
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    found = [c for c in circles() if frozenset(c) not in PENDING_CIRCLES]
    assert not found, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)
    for c in PENDING_CIRCLES:
        assert set(c) in circles(), f"{sorted(c)} is no longer a circle: drop it from PENDING"


def private_uses(module: str) -> set[tuple[str, str]]:
    """``(module, what)`` for each private name ``module`` takes from another module:
    ``from m import _x``, ``m._x`` on an imported mtlkit module, or a private module
    imported from outside its package."""
    found = set()
    for target, name, _ in imports(module):
        if name.startswith("_") and not name.startswith("__"):
            found.add((module, f"{target}.{name}"))
        parts = target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])  # the package the private module belongs to
                if not (module == owner or module.startswith(owner + ".")):
                    found.add((module, target))
    aliases = {}
    tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({(a.asname or a.name): a.name for a in node.names
                            if a.name.startswith("mtlkit")})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtlkit"):
            aliases.update({(a.asname or a.name): f"{node.module}.{a.name}" for a in node.names
                            if f"{node.module}.{a.name}" in modules()})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.add((module, f"{aliases[node.value.id]}.{node.attr}"))
    return found


def test_no_private_name_used_across_modules():
    found = set().union(*(private_uses(m) for m in modules()))
    bad = sorted(found - PENDING_PRIVATE)
    assert not bad, "private names used across modules:\n" + "\n".join(
        f"{m} uses {what}" for m, what in bad)
    stale = PENDING_PRIVATE - found
    assert not stale, f"no longer used, drop them from PENDING_PRIVATE: {sorted(stale)}"


@pytest.mark.parametrize("case", ["up", "circle", "private"])
def test_the_checks_catch_what_they_look_for(case, monkeypatch, tmp_path):
    """Each check fails on a package that breaks its rule (so none of them is vacuous)."""
    pkg = tmp_path / "mtlkit"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    src = {"up": ("import mtlkit.trainer\n", ""),
           "circle": ("from mtlkit import utils\n", "import mtlkit.data.base\n"),
           "private": ("from mtlkit.utils import _hidden\n", "_hidden = 1\n")}[case]
    (pkg / "data" / "base.py").write_text(src[0])
    (pkg / "utils.py").write_text(src[1])
    (pkg / "trainer.py").write_text("")
    monkeypatch.setattr(f"{__name__}.ROOT", pkg)
    for f in (modules, imports):
        f.cache_clear()
    monkeypatch.setattr(f"{__name__}.PENDING_IMPORTS", set())
    monkeypatch.setattr(f"{__name__}.PENDING_CIRCLES", set())
    monkeypatch.setattr(f"{__name__}.PENDING_PRIVATE", set())
    check = {"up": test_no_import_from_a_higher_layer, "circle": test_no_import_circle,
             "private": test_no_private_name_used_across_modules}[case]
    try:
        with pytest.raises(AssertionError):
            check()
    finally:
        for f in (modules, imports):
            f.cache_clear()
