"""What several test modules share (pytest puts ``tests/`` on ``sys.path``):

* ``fx``: the tiny-release builders of ``tests/fixtures/data_fixtures.py`` (each writes a
  dataset in exactly the layout its ``data_scripts/`` script produces), loaded once;
* :func:`run_full`: one notebook's ``full`` branch through the batch runner, as a user runs it;
* :func:`write_notebook`: a small notebook with a ``parameters`` cell, for the runner's tests.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

from mtlkit import nbrun

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _load_fixtures():
    if "data_fixtures" in sys.modules:
        return sys.modules["data_fixtures"]
    spec = importlib.util.spec_from_file_location(
        "data_fixtures", Path(__file__).parent / "fixtures" / "data_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["data_fixtures"] = mod
    spec.loader.exec_module(mod)
    return mod


fx = _load_fixtures()


def run_full(notebook: str, out: Path, *params: str) -> Path:
    """Run ``notebooks/<notebook>`` in the ``full`` profile with ``-p NAME VALUE`` ``params``
    into ``out``; return its completed run folder, or fail with the notebook's error.

    A finished benchmark keeps no model files (``TrainConfig.keep_files="none"``): a grid of
    transformer runs would otherwise leave gigabytes of checkpoints (CI's disk filled once)."""
    rc = nbrun.main([str(NOTEBOOKS / notebook), "--profile", "full", *params,
                     "--out", str(out), "--no-progress"])
    done = [p for p in Path(out).glob(f"{Path(notebook).stem}*") if (p / nbrun.DONE).exists()]
    if rc != 0 or len(done) != 1:
        errors = [p.read_text()[-3000:] for p in Path(out).rglob("_error.json")]
        pytest.fail(f"{notebook} (full) did not complete: exit {rc}; {errors or 'no run'}")
    left = [p for p in done[0].rglob("*") if p.suffix in (".pt", ".tmp")]
    assert not left, f"model files left behind: {left[:5]}"
    return done[0]


def write_notebook(path: Path, title: str, params: str, body: tuple[str, ...]) -> Path:
    """Write a notebook at ``path``: a markdown ``title``, the tagged ``params`` cell, then one
    code cell per ``body`` entry."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(title), cell,
                *[nbformat.v4.new_code_cell(src) for src in body]]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
