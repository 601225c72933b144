"""Layer rules of the library's core (issue 13), read from the source with ``ast``:

* the registry, the architectures, the strategies and the engines form layers, each
  importing only the ones below it (``LOWER``), never one above: no import circle;
* no lazy import of an ``mtlkit`` module inside a function in these packages;
* no private name (``_x``) imported from another module, and a private module
  (``mtlkit.P._m``) imported only by modules of its own package ``mtlkit.P``.

The upper layers (trainer, experiments, notebooks helpers) have their own rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mtlkit"

# ------------------------------------------------------------------ the core's layers
#: layer -> the mtlkit packages/modules it may import (besides itself); ``encoders`` and
#: ``losses`` are leaves the architectures use
LOWER: dict[str, set[str]] = {
    "registry": set(),
    "arch": {"registry", "encoders"},
    "weighting": {"registry"},
    "engine": {"registry", "arch", "weighting", "encoders"},
    "grads": {"engine"},  # re-export modules of the earlier layout
    "bilevel": {"engine"},
}
CORE = tuple(LOWER)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str | None:
    """``mtlkit.weighting.base`` -> ``weighting`` (None outside mtlkit)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "mtlkit" and len(parts) > 1 else None


def core_files() -> list[Path]:
    out = []
    for name in CORE:
        d = PKG / name
        out += sorted(d.rglob("*.py")) if d.is_dir() else [PKG / f"{name}.py"]
    return out


def imports(path: Path) -> list[tuple[str, str | None, bool, int]]:
    """(module, imported name or None, inside a function, line) of every import; for
    ``from package import name`` where ``name`` is a submodule, the submodule."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, None, in_func, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    is_mod = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (ROOT / Path(*sub.split("."))).is_dir()
                    out.append((sub, None, in_func, child.lineno) if is_mod else
                               (child.module, a.name, in_func, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return out


def mtlkit_imports(path: Path):
    return [(m, n, f, ln) for m, n, f, ln in imports(path) if m.split(".")[0] == "mtlkit"]


def test_the_core_imports_only_lower_layers():
    bad = []
    for path in core_files():
        here = layer(module_name(path))
        for mod, _, _, line in mtlkit_imports(path):
            there = layer(mod)
            if there not in (here, None) and there not in LOWER[here]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {mod} ({there})")
    assert not bad, "imports from a layer that is not below:\n" + "\n".join(bad)


def test_the_core_layers_form_no_circle():
    """The allowed imports (LOWER) are themselves acyclic, and so is the module graph."""
    seen: dict[str, int] = {}

    def depth(name: str, stack: tuple = ()) -> int:
        assert name not in stack, f"layer circle: {' -> '.join(stack + (name,))}"
        if name not in seen:
            seen[name] = 1 + max((depth(b, stack + (name,)) for b in LOWER.get(name, ())
                                  if b in LOWER), default=0)
        return seen[name]

    for name in LOWER:
        depth(name)
    graph = {module_name(p): {m for m, _, _, _ in mtlkit_imports(p)} for p in core_files()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt in graph and not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [node])


def test_no_lazy_import_of_mtlkit_in_the_core():
    lazy = [f"{p.relative_to(ROOT)}:{line} imports {m} inside a function"
            for p in core_files() for m, _, in_func, line in mtlkit_imports(p) if in_func]
    assert not lazy, "\n".join(lazy)


def test_no_private_name_crosses_a_module():
    bad = []
    for path in core_files():
        here = module_name(path)
        package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
        for mod, name, _, line in mtlkit_imports(path):
            if name is not None and name.startswith("_"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} from {mod}")
            owner, _, last = mod.rpartition(".")
            if last.startswith("_") and not last.startswith("__") and owner != package:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports the private module {mod}")
    assert not bad, "\n".join(bad)


def test_the_rules_see_what_they_check():
    """The readers find imports at all levels (so the tests above can fail)."""
    found = imports(PKG / "weighting" / "base.py")
    assert ("mtlkit.weighting._gram", "gram64", False, found[0][3]) != found[0]
    assert any(m == "mtlkit.weighting._gram" and n == "gram64" for m, n, _, _ in found)
    assert layer("mtlkit.engine.single") == "engine" and layer("torch") is None
    init = imports(PKG / "weighting" / "__init__.py")
    assert any(m == "mtlkit.weighting._solvers" for m, _, _, _ in init)
