"""Static checks of every notebook against the template in CONVENTIONS.md.

Parametrized by notebook so a failure names the file. No kernel is started.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIRED_HEADINGS = ("## Learning goals", "## Summary", "## Exercises", "## References")
REQUIRED_PARAMS = ("PROFILE", "SEEDS", "DEVICE", "OUT_DIR")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _code(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _is_template(path: Path) -> bool:
    return path.name == "_template.ipynb"


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, dict]:
    return request.param, _load(request.param)


def test_there_are_notebooks():
    assert any(p.name.startswith("00_") for p in NOTEBOOKS)
    assert (ROOT / "notebooks" / "_template.ipynb") in NOTEBOOKS


def test_file_name(notebook):
    path, _ = notebook
    assert _is_template(path) or re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), (
        f"{path.name}: name notebooks NN_slug.ipynb (lower case, underscores)")


def test_first_code_cell_is_the_parameters_cell(notebook):
    path, nb = notebook
    first = _code(nb)[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), (
        f"{path.name}: the first code cell must be tagged 'parameters'")


def test_parameters_are_literal_annotated_and_commented(notebook):
    path, nb = notebook
    src = _src(_code(nb)[0])
    lines = src.splitlines()
    names = []
    for node in ast.parse(src).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), (
            f"{path.name}: line {node.lineno} of the parameters cell is not `NAME: type = "
            "literal` (no imports, no code)")
        assert node.value is not None, f"{path.name}: {node.target.id} has no value"
        try:
            ast.literal_eval(node.value)
        except ValueError:
            pytest.fail(f"{path.name}: {node.target.id} is not a literal value")
        for lineno in range(node.lineno, node.end_lineno + 1):
            assert "#" in lines[lineno - 1], (
                f"{path.name}: parameter {node.target.id} needs a `# comment` on its line")
        names.append(node.target.id)
    missing = [p for p in REQUIRED_PARAMS if p not in names]
    assert not missing, f"{path.name}: the parameters cell lacks {missing}"


def test_parameters_are_papermill_parsable(notebook):
    """papermill's own inspector skips a parameter line holding more than one `=`
    (e.g. in its comment), and then reports the parameter as unknown."""
    from papermill.translators import PythonTranslator

    path, nb = notebook
    src = _src(_code(nb)[0])
    import nbformat

    cell = nbformat.v4.new_code_cell(src)
    found = {p.name for p in PythonTranslator.inspect(cell)}
    declared = {n.target.id for n in ast.parse(src).body}
    assert found == declared, (f"{path.name}: papermill cannot read {sorted(declared - found)}; "
                               "keep one `=` per line (write 'means', not '=', in comments)")


def test_no_injected_parameters_cell(notebook):
    path, nb = notebook
    for cell in nb["cells"]:
        assert "injected-parameters" not in cell.get("metadata", {}).get("tags", []), (
            f"{path.name}: commit the source notebook, not a papermill output")


def test_kernelspec_is_python3(notebook):
    path, nb = notebook
    assert nb.get("metadata", {}).get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: set metadata.kernelspec.name to 'python3'")


def test_required_headings(notebook):
    path, nb = notebook
    lines = {line.strip() for c in nb["cells"] if c["cell_type"] == "markdown"
             for line in _src(c).splitlines()}
    missing = [h for h in REQUIRED_HEADINGS if h not in lines]
    assert not missing, f"{path.name}: missing headings {missing}"


def test_title_cell(notebook):
    path, nb = notebook
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown", f"{path.name}: start with the title cell"
    if not _is_template(path):
        title = _src(first).lstrip()
        assert title.startswith(f"# {path.name[:2]} · "), (
            f"{path.name}: the title must start with '# {path.name[:2]} · '")


def test_has_a_claim_or_assert(notebook):
    path, nb = notebook
    code = "\n".join(_src(c) for c in _code(nb))
    assert "claim(" in code or re.search(r"^\s*assert\b", code, re.M), (
        f"{path.name}: check something with nb.claim(...) or assert")


def test_setup_call(notebook):
    path, nb = notebook
    later = "\n".join(_src(c) for c in _code(nb)[1:])
    assert re.search(r"\bnb\.setup\(globals\(\)\)", later), (
        f"{path.name}: call cfg = nb.setup(globals()) after the parameters cell")


def test_outputs_stripped(notebook):
    path, nb = notebook
    for i, cell in enumerate(_code(nb)):
        assert not cell.get("outputs") and cell.get("execution_count") is None, (
            f"{path.name}: code cell {i} has outputs; run nbstripout {path.name}")


def test_widget_cells_ignore_output(notebook):
    path, nb = notebook
    for cell in _code(nb):
        src = _src(cell)
        if re.search(r"\binteract(ive)?\(", src):
            assert src.lstrip().startswith("# NBVAL_IGNORE_OUTPUT"), (
                f"{path.name}: an interact cell must start with # NBVAL_IGNORE_OUTPUT")


def test_listed_in_readme_map(notebook):
    path, _ = notebook
    if _is_template(path):
        pytest.skip("the template is not part of the series")
    rows = [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.lstrip().startswith("|")]
    assert any(path.name in row for row in rows), (
        f"{path.name} is not in README.md's notebook map (a table row naming the file)")
