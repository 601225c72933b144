"""Tests of the papermill batch runner (mtlkit.nbrun) and the HTML report.

Kernel starts cost ~2 s each, so only a handful of tests execute notebooks;
the rest check parsing, validation and layout without a kernel.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mtlkit import nbrun
from mtlkit.report import write_report

# a valid 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

PARAMS = '''PROFILE: str = "teach"  # smoke | teach | full
SEEDS: list = [0]  # random seeds
DEVICE: str = "auto"  # auto | cpu
OUT_DIR: str = ""  # outputs
FAIL: bool = False  # raise in the second cell
BLOCK: str = ""  # while this file exists, the second cell waits
LR: float = 0.1  # a float parameter'''

BODY = [
    # cell 1: outputs like mtlkit.nb writes them (no torch import: keeps the kernel fast)
    '''import json, os, pathlib, base64
out = pathlib.Path(OUT_DIR)
(out / "figures").mkdir(parents=True, exist_ok=True)
count = out / "count.txt"
count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
(out / "metrics.json").write_text(json.dumps(
    {"acc": 0.5 + LR, "seeds": SEEDS, "nested": {"loss": 1.25, "deep": {"x": 2}}}))
(out / "claims.json").write_text(json.dumps([
    {"claim": "gradient matches finite differences", "ok": True, "expect": True,
     "verdict": "holds", "detail": "max err 1e-9"},
    {"claim": "Theorem 9 as written", "ok": False, "expect": False,
     "verdict": "fails as written (shown)", "detail": "counterexample T=2"}]))
(out / "figures" / "fig.png").write_bytes(base64.b64decode("PNG64"))
print("cell one done")'''.replace("PNG64", base64.b64encode(PNG).decode()),
    # cell 2: may fail or block
    '''import time
while BLOCK and os.path.exists(BLOCK):
    time.sleep(0.2)
if FAIL:
    raise RuntimeError("boom in cell two")''',
    '''(out / "finished.txt").write_text("yes")''',
]


def make_notebook(path: Path, params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · A tiny test notebook"), cell,
                *[nbformat.v4.new_code_cell(src) for src in BODY]]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "nbs" / "99_tiny.ipynb")


# ---------------------------------------------------------------- no kernel
def test_parameters_cell_is_parsed(tiny):
    params = nbrun.notebook_parameters(tiny)
    assert list(params) == ["PROFILE", "SEEDS", "DEVICE", "OUT_DIR", "FAIL", "BLOCK", "LR"]
    assert params["SEEDS"].annotation == "list" and params["SEEDS"].default == [0]
    assert params["PROFILE"].help == "smoke | teach | full"


def test_unknown_parameter_exits_nonzero_and_lists_valid_names(tiny, tmp_path, capsys):
    rc = nbrun.main([str(tiny), "-p", "NO_SUCH_PARAM", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "NO_SUCH_PARAM" in err
    for name in ("PROFILE", "SEEDS", "DEVICE", "OUT_DIR", "LR"):
        assert name in err
    assert not (tmp_path / "o").exists()


def test_cli_entry_point_rejects_unknown_parameter(tiny, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mtlkit.nbrun", str(tiny), "-p", "NOPE", "1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown parameter(s) NOPE" in proc.stderr and "SEEDS: list" in proc.stderr


@pytest.mark.parametrize("name, raw, words", [
    ("SEEDS", "abc", ["SEEDS expects list", "got str"]),
    ("LR", "fast", ["LR expects float"]),
    ("FAIL", "[1]", ["FAIL expects bool"]),
    ("PROFILE", "[smoke]", ["PROFILE expects str"]),
    ("PROFILE", "huge", ["not a profile", "smoke, teach, full"]),
])
def test_wrongly_typed_value_gives_clear_error(tiny, tmp_path, capsys, name, raw, words):
    rc = nbrun.main([str(tiny), "-p", name, raw, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    for w in words:
        assert w in err


def test_values_are_parsed_as_yaml(tiny, tmp_path):
    given = {k: nbrun.parse_value(v) for k, v in
             {"SEEDS": "[0, 1, 2]", "LR": "3", "FAIL": "true", "DEVICE": "cuda:0",
              "BLOCK": "2024"}.items()}
    raw = {"BLOCK": "2024"}
    (run,) = nbrun.plan([tiny], given, [{}], tmp_path / "o", raw)
    p = run.params
    assert p["SEEDS"] == [0, 1, 2]
    assert p["LR"] == 3.0 and isinstance(p["LR"], float)
    assert p["FAIL"] is True
    assert p["DEVICE"] == "cuda:0"
    assert p["BLOCK"] == "2024"  # a str parameter keeps the text as typed
    assert p["OUT_DIR"] == str((tmp_path / "o" / "99_tiny").resolve())


def test_annotation_checks():
    assert nbrun._type_ok([1, 2], "list[int]") and not nbrun._type_ok([1, "a"], "list[int]")
    assert nbrun._type_ok(None, "str | None") and nbrun._type_ok("a", "Optional[str]")
    assert not nbrun._type_ok(True, "int") and nbrun._type_ok(2, "float")
    assert nbrun._type_ok({"a": 1}, "dict[str, int]") and not nbrun._type_ok([], "dict")


def test_grid_expansion(tiny, tmp_path):
    assert nbrun.expand_grid({"LR": [0.1, 0.2], "SEEDS": [[0], [1, 2]], "PROFILE": "smoke"}) == [
        {"LR": 0.1, "SEEDS": [0], "PROFILE": "smoke"},
        {"LR": 0.1, "SEEDS": [1, 2], "PROFILE": "smoke"},
        {"LR": 0.2, "SEEDS": [0], "PROFILE": "smoke"},
        {"LR": 0.2, "SEEDS": [1, 2], "PROFILE": "smoke"}]
    assert nbrun.expand_grid([{"LR": 1}, {"LR": 2, "FAIL": True}]) == [
        {"LR": 1}, {"LR": 2, "FAIL": True}]
    assert nbrun.expand_grid(None) == [{}]
    with pytest.raises(nbrun.UsageError):
        nbrun.expand_grid("LR")
    runs = nbrun.plan([tiny], {"PROFILE": "smoke"}, nbrun.expand_grid({"LR": [0.1, 0.2]}),
                      tmp_path / "o", {})
    dirs = {r.run_dir.relative_to((tmp_path / "o").resolve()).as_posix() for r in runs}
    assert dirs == {"99_tiny/LR=0.1", "99_tiny/LR=0.2"}
    assert all(r.params["PROFILE"] == "smoke" and r.output.parent == r.run_dir for r in runs)
    # a grid entry is validated like -p
    with pytest.raises(nbrun.UsageError, match="unknown parameter"):
        nbrun.plan([tiny], {}, [{"NOPE": 1}], tmp_path / "o", {})


def test_prepare_only_injects_parameters_flat(tiny, tmp_path):
    out = tmp_path / "prep"
    rc = nbrun.main([str(tiny), "--profile", "smoke", "-p", "SEEDS", "[3, 4]", "--prepare-only",
                     "--out", str(out), "--no-progress"])
    assert rc == 0
    nb = nbformat.read(out / "99_tiny.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    src = injected[0].source
    assert "PROFILE = \"smoke\"" in src and "SEEDS = [3, 4]" in src
    assert f"OUT_DIR = \"{(out / '_out' / '99_tiny').resolve()}\"" in src
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert not list(out.rglob("*.ipynb"))[1:]  # exactly one notebook, nothing nested


def test_grid_file_on_the_command_line(tiny, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("LR: [0.1, 0.2]\nSEEDS: [[0, 1]]\n")
    out = tmp_path / "prep"
    assert nbrun.main([str(tiny), "--grid", str(grid), "--prepare-only", "--out", str(out),
                       "--no-progress"]) == 0
    names = sorted(p.name for p in out.glob("*.ipynb"))
    assert names == ["99_tiny__LR=0.1,SEEDS=0-1.ipynb", "99_tiny__LR=0.2,SEEDS=0-1.ipynb"]
    src = nbformat.read(out / names[1], as_version=4).cells[2].source
    assert "LR = 0.2" in src and "SEEDS = [0, 1]" in src
    grid.write_text("LR: [0.1, fast]\n")
    assert nbrun.main([str(tiny), "--grid", str(grid), "--prepare-only", "--out", str(out)]) == 2
    assert "LR expects float" in capsys.readouterr().err


def test_check_kernel_accepts_this_environment():
    assert nbrun.check_kernel() is None
    assert "ipykernel install" in nbrun.check_kernel("no-such-kernel-xyz")


def test_check_kernel_warns_about_a_foreign_interpreter(monkeypatch):
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    spec = KernelSpec(argv=["/opt/elsewhere/bin/python", "-m", "ipykernel_launcher"],
                      display_name="Python 3", language="python")
    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", lambda self, name: spec)
    warning = nbrun.check_kernel()
    assert "/opt/elsewhere/bin/python" in warning
    assert f"{sys.executable} -m ipykernel install --sys-prefix" in warning


def test_flatten_and_list_notebooks(tmp_path):
    assert nbrun.flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": 2}) == {
        "a.b": 1, "a.c.d": [1], "e": 2}
    make_notebook(tmp_path / "12_x.ipynb")
    make_notebook(tmp_path / "_template.ipynb")
    assert nbrun.list_notebooks(tmp_path) == [
        {"number": "12", "file": "12_x.ipynb", "title": "A tiny test notebook",
         "series": "loss-based"}]


# ------------------------------------------------------------ with a kernel
def test_run_skip_force_metrics_and_report(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    args = [str(tiny), "--profile", "smoke", "--out", str(out), "--report", "--no-progress"]
    assert nbrun.main(args) == 0
    run_dir = out / "99_tiny"
    done = json.loads((run_dir / nbrun.DONE).read_text())
    assert done["status"] == "ok" and done["parameters"]["PROFILE"] == "smoke"
    assert done["parameters"]["OUT_DIR"] == str(run_dir.resolve()) and done["wall_s"] > 0
    executed = nbformat.read(run_dir / "99_tiny.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in executed.cells)
    assert (run_dir / "finished.txt").exists() and (run_dir / "count.txt").read_text() == "1"

    # metrics.csv: one tidy row per (flattened) key
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {r["key"] for r in rows} == {"acc", "seeds", "nested.loss", "nested.deep.x"}
    acc = next(r for r in rows if r["key"] == "acc")
    assert acc["notebook"] == "99_tiny.ipynb" and acc["run"] == "99_tiny"
    assert float(acc["value"]) == pytest.approx(0.6)
    assert json.loads(acc["parameters"]) == {"PROFILE": "smoke"}

    # the report shows the verdicts, metrics and the embedded figure
    page = (out / "index.html").read_text()
    for text in ("gradient matches finite differences", "holds", "Theorem 9 as written",
                 "fails as written (shown)", "counterexample T=2", "nested.loss",
                 "data:image/png;base64,", "A tiny test notebook", "class='ok'",
                 "href='metrics.csv'", "href='99_tiny/99_tiny.ipynb'"):
        assert text in page

    # rerun: skipped; --force: executed again
    capsys.readouterr()
    assert nbrun.main(args) == 0
    assert "already completed" in capsys.readouterr().out
    assert (run_dir / "count.txt").read_text() == "1"
    assert nbrun.main([*args, "--force"]) == 0
    assert (run_dir / "count.txt").read_text() == "2"
    # a different parameter value is a different run: not skipped
    assert nbrun.main([*args, "-p", "LR", "0.3"]) == 0
    assert (run_dir / "count.txt").read_text() == "3"


def test_failed_run_leaves_partial_notebook_and_others_finish(tmp_path):
    bad = make_notebook(tmp_path / "nbs" / "98_bad.ipynb",
                        PARAMS.replace("FAIL: bool = False", "FAIL: bool = True"))
    good = make_notebook(tmp_path / "nbs" / "99_good.ipynb")
    block = tmp_path / "block"
    block.write_text("wait forever")
    slow = make_notebook(tmp_path / "nbs" / "97_slow.ipynb",
                         PARAMS.replace('BLOCK: str = ""', f'BLOCK: str = "{block}"'))
    out = tmp_path / "runs"
    rc = nbrun.main([str(bad), str(good), str(slow), "--out", str(out), "--jobs", "2",
                     "--no-progress", "--report", "--cell-timeout", "6"])
    assert rc == 1
    timed_out = json.loads((out / "97_slow" / nbrun.ERROR).read_text())
    assert "CellTimeoutError" in timed_out["error"] or "timed out" in timed_out["error"]
    assert not (out / "97_slow" / nbrun.DONE).exists()
    bad_dir, good_dir = out / "98_bad", out / "99_good"
    assert not (bad_dir / nbrun.DONE).exists()
    err = json.loads((bad_dir / nbrun.ERROR).read_text())
    assert err["status"] == "failed" and "RuntimeError: boom in cell two" in err["error"]
    partial = nbformat.read(bad_dir / "98_bad.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in partial.cells)
    assert not (bad_dir / "finished.txt").exists()
    assert (good_dir / nbrun.DONE).exists() and (good_dir / "finished.txt").exists()
    page = (out / "index.html").read_text()
    assert "class='failed'" in page and "boom in cell two" in page


def test_killed_run_resumes_without_redoing_completed(tmp_path):
    """Kill a two-notebook run half way; the rerun only executes the unfinished one."""
    block = tmp_path / "block"
    block.write_text("wait")
    first = make_notebook(tmp_path / "nbs" / "97_first.ipynb")
    second = make_notebook(tmp_path / "nbs" / "99_second.ipynb",  # waits while block exists
                           PARAMS.replace('BLOCK: str = ""', f'BLOCK: str = "{block}"'))
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mtlkit.nbrun", str(first), str(second), "--out", str(out),
           "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not (out / "99_second" / "count.txt").exists():  # second is blocked in cell 2
            assert time.time() < deadline and proc.poll() is None, "runner did not get there"
            time.sleep(0.2)
        time.sleep(1.0)  # let papermill save the notebook after cell 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "97_first" / nbrun.DONE).exists()
    assert not (out / "99_second" / nbrun.DONE).exists()
    partial = nbformat.read(out / "99_second" / "99_second.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in partial.cells)

    block.unlink()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "97_first  already completed" in rerun.stdout
    assert (out / "97_first" / "count.txt").read_text() == "1"  # not redone
    assert (out / "99_second" / "count.txt").read_text() == "2"  # restarted, finished
    assert (out / "99_second" / nbrun.DONE).exists()


def test_report_of_a_folder_without_markers(tmp_path):
    run = tmp_path / "01_x"
    (run / "figures").mkdir(parents=True)
    (run / "claims.json").write_text(json.dumps(
        [{"claim": "c1", "ok": False, "expect": True, "verdict": "fails", "detail": "<b>"}]))
    page = write_report(tmp_path).read_text()
    assert "incomplete" in page and "c1" in page and "&lt;b&gt;" in page
    assert "class='fail'" in page
