"""Tests of the papermill batch runner (mtlkit.nbrun) and the HTML report.

Kernel starts cost ~2 s each, so only a handful of tests execute notebooks;
the rest check parsing, validation and layout without a kernel.
"""

from __future__ import annotations

import ast
import base64
import contextlib
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
from support import write_notebook

from mtlkit import nbrun
from mtlkit.batch.report import write_report

# a valid 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

PARAMS = '''PROFILE: str = "teach"  # smoke | teach | full
SEEDS: list = [0]  # random seeds
DEVICE: str = "auto"  # auto | cpu
OUT_DIR: str = ""  # outputs
FAIL: bool = False  # raise in the second cell
BLOCK: str = ""  # while this file exists, the second cell waits
LR: float = 0.1  # a float parameter
STEPS: int = 3  # an int parameter'''

BODY = [
    # cell 1: outputs like mtlkit.nb writes them (no torch import: keeps the kernel fast)
    '''import json, os, pathlib, base64
out = pathlib.Path(OUT_DIR)
(out / "figures").mkdir(parents=True, exist_ok=True)
count = out / "count.txt"
count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
(out / "metrics.json").write_text(json.dumps(
    {"acc": 0.5 + LR, "seeds": SEEDS, "nested": {"loss": 1.25, "deep": {"x": 2}},
     "tag": os.environ.get("TINY_TAG", "")}))
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
if FAIL or os.environ.get("TINY_FAIL"):
    raise RuntimeError("boom in cell two")''',
    '''(out / "finished.txt").write_text("yes")''',
]


def make_notebook(path: Path, params: str = PARAMS, extra: tuple[str, ...] = ()) -> Path:
    return write_notebook(path, "# 99 · A tiny test notebook", params, (*BODY, *extra))


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "nbs" / "99_tiny.ipynb")


# ---------------------------------------------------------------- no kernel
def test_parameters_cell_is_parsed(tiny):
    params = nbrun.notebook_parameters(tiny)
    assert list(params) == ["PROFILE", "SEEDS", "DEVICE", "OUT_DIR", "FAIL", "BLOCK", "LR",
                            "STEPS"]
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
    ("PROFILE", "[smoke]", ["not a profile"]),  # a str parameter takes the text as typed
    ("STEPS", "1.5", ["STEPS expects int"]),
    ("PROFILE", "huge", ["not a profile", "smoke, teach, paper-cpu, full"]),
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
    assert p["OUT_DIR"] == str(run.stage) and run.stage.parent.name == nbrun.ATTEMPTS
    assert run.stage.name == run.run_dir.name and run.stage.parent.parent == run.run_dir.parent


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
    assert dirs == {"99_tiny", "99_tiny__LR=0.2"}  # LR=0.1 is the default
    assert all(r.params["PROFILE"] == "smoke" and r.output.parent == r.run_dir for r in runs)
    # a grid entry is validated like -p
    with pytest.raises(nbrun.UsageError, match="unknown parameter"):
        nbrun.plan([tiny], {}, [{"NOPE": 1}], tmp_path / "o", {})


def test_prepare_only_injects_parameters_flat(tiny, tmp_path):
    out = tmp_path / "prep"
    rc = nbrun.main([str(tiny), "--profile", "smoke", "-p", "SEEDS", "[3, 4]", "--prepare-only",
                     "--out", str(out), "--no-progress"])
    assert rc == 0
    nb = nbformat.read(out / "99_tiny__SEEDS=3-4.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    src = injected[0].source
    assert "PROFILE = \"smoke\"" in src and "SEEDS = [3, 4]" in src
    assert f"OUT_DIR = \"{(out / '_out' / '99_tiny__SEEDS=3-4').resolve()}\"" in src
    assert [p.name for p in out.glob("*.ipynb")] == ["99_tiny__SEEDS=3-4.ipynb"]
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert not list(out.rglob("*.ipynb"))[1:]  # exactly one notebook, nothing nested


def test_grid_file_on_the_command_line(tiny, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("LR: [0.1, 0.2]\nSEEDS: [[0, 1]]\n")
    out = tmp_path / "prep"
    assert nbrun.main([str(tiny), "--grid", str(grid), "--prepare-only", "--out", str(out),
                       "--no-progress"]) == 0
    names = sorted(p.name for p in out.glob("*.ipynb"))
    assert names == ["99_tiny__LR=0.2,SEEDS=0-1.ipynb", "99_tiny__SEEDS=0-1.ipynb"]
    src = nbformat.read(out / names[0], as_version=4).cells[2].source
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
def test_run_skip_force_metrics_and_report(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "runs"
    args = [str(tiny), "--profile", "smoke", "--out", str(out), "--report", "--no-progress"]
    monkeypatch.setenv("TINY_TAG", "first")
    assert nbrun.main(args) == 0
    run_dir = out / "99_tiny"
    done = json.loads((run_dir / nbrun.DONE).read_text())
    assert done["status"] == "ok" and done["parameters"]["PROFILE"] == "smoke"
    assert done["resolved"]["LR"] == 0.1 and "OUT_DIR" not in done["resolved"]
    assert done["wall_s"] > 0 and done["finished"] >= done["started"]
    executed = nbformat.read(run_dir / "99_tiny.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in executed.cells)
    assert (run_dir / "finished.txt").exists() and (run_dir / "count.txt").read_text() == "1"
    assert not (out / nbrun.ATTEMPTS).exists()  # moved into place, nothing left over

    # metrics.csv: one tidy row per (flattened) key, with status, finish time, parameters
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {r["key"] for r in rows} == {"acc", "seeds", "nested.loss", "nested.deep.x", "tag"}
    acc = next(r for r in rows if r["key"] == "acc")
    assert acc["notebook"] == "99_tiny.ipynb" and acc["run"] == "99_tiny"
    assert acc["status"] == "ok" and acc["finished"] == done["finished"]
    assert float(acc["value"]) == pytest.approx(0.6)
    assert json.loads(acc["parameters"]) == done["resolved"]

    # the report shows the verdicts, metrics, the embedded figure, and links the HTML copy
    page = (out / "index.html").read_text()
    for text in ("gradient matches finite differences", "holds", "Theorem 9 as written",
                 "fails as written (shown)", "counterexample T=2", "nested.loss",
                 "data:image/png;base64,", "A tiny test notebook", "class='ok'",
                 "href='metrics.csv'", "href='runs.csv'", "href='99_tiny/99_tiny.ipynb'",
                 "href='99_tiny/99_tiny.html'"):
        assert text in page
    assert "cell one done" in (run_dir / "99_tiny.html").read_text()

    # rerun: skipped; --force: executed again, in a fresh folder that replaces the first
    capsys.readouterr()
    assert nbrun.main(args) == 0
    assert "already completed" in capsys.readouterr().out
    assert (run_dir / "count.txt").read_text() == "1"
    monkeypatch.setenv("TINY_TAG", "forced")
    assert nbrun.main([*args, "--force"]) == 0
    assert (run_dir / "count.txt").read_text() == "1"  # nothing left over from the first
    assert json.loads((run_dir / "metrics.json").read_text())["tag"] == "forced"

    # a different parameter value is a different run in its own folder; the first is kept
    assert nbrun.main([*args, "-p", "LR", "0.3"]) == 0
    other = out / "99_tiny__LR=0.3"
    assert (other / "count.txt").read_text() == "1"
    assert json.loads((other / nbrun.DONE).read_text())["resolved"]["LR"] == 0.3
    assert json.loads((run_dir / "metrics.json").read_text())["acc"] == pytest.approx(0.6)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert sorted((r["run"], float(r["value"])) for r in rows if r["key"] == "acc") == [
        ("99_tiny", pytest.approx(0.6)), ("99_tiny__LR=0.3", pytest.approx(0.8))]
    capsys.readouterr()
    assert nbrun.main([*args, "-p", "LR", "3e-1"]) == 0  # the same parameters: skipped
    assert "99_tiny__LR=0.3  already completed" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    for folder in ("99_tiny", "99_tiny__LR=0.3"):  # an HTML copy of each completed run
        assert f"href='{folder}/99_tiny.html'" in page and (out / folder / "99_tiny.html").exists()


def test_a_failed_force_rerun_keeps_the_completed_result(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "runs"
    args = [str(tiny), "--out", str(out), "--no-progress", "--report"]
    monkeypatch.setenv("TINY_TAG", "good")
    assert nbrun.main(args) == 0
    run_dir = out / "99_tiny"
    kept = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()
            and p.suffix != ".html"}
    monkeypatch.setenv("TINY_TAG", "bad")
    monkeypatch.setenv("TINY_FAIL", "1")  # same parameters, but this attempt fails in cell 2
    capsys.readouterr()
    assert nbrun.main([*args, "--force"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 99_tiny: RuntimeError: boom in cell two" in err
    assert "the earlier completed run is kept" in err
    assert {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()
            and p.suffix != ".html"} == kept
    attempt = out / nbrun.ATTEMPTS / "99_tiny"  # the failed attempt, kept for inspection
    assert json.loads((attempt / nbrun.ERROR).read_text())["status"] == "failed"
    assert json.loads((attempt / "metrics.json").read_text())["tag"] == "bad"
    partial = nbformat.read(attempt / "99_tiny.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in partial.cells)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["value"] for r in rows if r["key"] == "tag"] == ['"good"']
    runs = {r["folder"]: r["status"] for r in csv.DictReader((out / "runs.csv").open())}
    assert runs == {"99_tiny": "ok", f"{nbrun.ATTEMPTS}/99_tiny": "failed"}
    page = (out / "index.html").read_text()
    assert "Failed and interrupted attempts" in page and "boom in cell two" in page
    # the next successful attempt replaces the result and clears the failed attempt
    monkeypatch.delenv("TINY_FAIL")
    monkeypatch.setenv("TINY_TAG", "fixed")
    capsys.readouterr()
    assert nbrun.main(args) == 0  # the completed result stands: skipped
    assert "99_tiny  already completed" in capsys.readouterr().out
    assert nbrun.main([*args, "--force"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["tag"] == "fixed"
    assert not attempt.exists()


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
    attempts = out / nbrun.ATTEMPTS
    timed_out = json.loads((attempts / "97_slow" / nbrun.ERROR).read_text())
    assert "CellTimeoutError" in timed_out["error"] or "timed out" in timed_out["error"]
    assert not (out / "97_slow").exists()
    bad_dir, good_dir = attempts / "98_bad", out / "99_good"
    assert not (out / "98_bad").exists() and not (bad_dir / nbrun.DONE).exists()
    err = json.loads((bad_dir / nbrun.ERROR).read_text())
    assert err["status"] == "failed" and "RuntimeError: boom in cell two" in err["error"]
    partial = nbformat.read(bad_dir / "98_bad.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in partial.cells)
    assert not (bad_dir / "finished.txt").exists()
    assert (good_dir / nbrun.DONE).exists() and (good_dir / "finished.txt").exists()
    page = (out / "index.html").read_text()
    assert "class='failed'" in page and "boom in cell two" in page
    assert f"href='{nbrun.ATTEMPTS}/98_bad/98_bad.html'" in page  # the partial notebook
    assert {r["run"] for r in csv.DictReader((out / "metrics.csv").open())} == {"99_good"}


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
        while not (out / "_attempts" / "99_second" / "count.txt").exists():  # blocked in cell 2
            assert time.time() < deadline and proc.poll() is None, "runner did not get there"
            time.sleep(0.2)
        time.sleep(1.0)  # let papermill save the notebook after cell 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (out / "97_first" / nbrun.DONE).exists()
    assert not (out / "99_second").exists()  # nothing half-done among the results
    attempt = out / nbrun.ATTEMPTS / "99_second"
    partial = nbformat.read(attempt / "99_second.ipynb", as_version=4)
    assert any("cell one done" in str(c.get("outputs")) for c in partial.cells)

    block.unlink()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "97_first  already completed" in rerun.stdout
    assert (out / "97_first" / "count.txt").read_text() == "1"  # not redone
    assert (out / "99_second" / "count.txt").read_text() == "1"  # restarted afresh, finished
    assert (out / "99_second" / nbrun.DONE).exists() and not attempt.exists()


def test_report_of_a_folder_without_markers(tmp_path):
    run = tmp_path / "01_x"
    (run / "figures").mkdir(parents=True)
    (run / "claims.json").write_text(json.dumps(
        [{"claim": "c1", "ok": False, "expect": True, "verdict": "fails", "detail": "<b>"}]))
    page = write_report(tmp_path).read_text()
    assert "incomplete" in page and "c1" in page and "&lt;b&gt;" in page
    assert "class='fail'" in page


# ------------------------------------------------- results integrity (issue 12)
def _done(run_dir: Path, params: dict, metrics: dict | None = None, **extra) -> Path:
    """A completed run folder as the runner writes it (no kernel needed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / nbrun.DONE).write_text(json.dumps(
        {"status": "ok", "notebook": "99_tiny.ipynb", "parameters": params,
         "finished": "2026-01-02T03:04:05+0000", **extra}))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_metrics_csv_lists_each_completed_run_once_and_never_a_failed_one(tmp_path):
    out = tmp_path / "o"
    _done(out / "99_tiny", {"PROFILE": "smoke"}, {"acc": 0.6})
    failed = out / "_attempts" / "99_tiny"  # a failed --force rerun of the same run
    failed.mkdir(parents=True)
    (failed / "metrics.json").write_text(json.dumps({"acc": 0.1}))
    (failed / nbrun.ERROR).write_text(json.dumps({"status": "failed", "error": "boom"}))
    half = out / "98_half"  # an older layout: a run that died half way, metrics written
    half.mkdir()
    (half / "metrics.json").write_text(json.dumps({"acc": 0.2}))
    rows = list(csv.DictReader(nbrun.collect_metrics(out).open()))
    assert [(r["run"], r["key"], float(r["value"])) for r in rows] == [("99_tiny", "acc", 0.6)]
    assert rows[0]["status"] == "ok" and rows[0]["finished"] == "2026-01-02T03:04:05+0000"
    assert json.loads(rows[0]["parameters"]) == {"PROFILE": "smoke"}
    listing = {r["folder"]: r for r in csv.DictReader(nbrun.collect_runs(out).open())}
    assert listing["99_tiny"]["status"] == "ok"
    assert listing[f"{nbrun.ATTEMPTS}/99_tiny"]["status"] == "failed"
    assert listing[f"{nbrun.ATTEMPTS}/99_tiny"]["error"] == "boom"
    assert listing["98_half"]["status"] == "incomplete"


def test_each_parameter_set_gets_its_own_stable_folder(tiny, tmp_path):
    out = (tmp_path / "o").resolve()

    def folder(raw: dict, grid: list | None = None) -> list[str]:
        runs = nbrun.plan([tiny], {}, grid or [{}], out, raw)
        return [r.run_dir.relative_to(out).as_posix() for r in runs]

    assert folder({}) == ["99_tiny"]  # the notebook's defaults
    assert folder({"PROFILE": "teach"}) == ["99_tiny"]  # the default profile
    assert folder({"PROFILE": "smoke"}) == ["99_tiny"]  # --profile is the batch's profile
    assert folder({"LR": "0.1"}) == ["99_tiny"]  # equal to the default
    assert folder({"LR": "0.3"}) == folder({"LR": "3e-1"}) == ["99_tiny__LR=0.3"]
    assert folder({"SEEDS": "[0, 1]", "LR": "0.3"}) == ["99_tiny__LR=0.3,SEEDS=0-1"]
    assert folder({}, [{"PROFILE": "smoke"}, {"PROFILE": "teach"}]) == [
        "99_tiny__PROFILE=smoke", "99_tiny"]
    # lossy or long labels are hashed, and distinct values never share a folder
    a, b = folder({"DEVICE": "cuda:0"}), folder({"DEVICE": "cuda_0"})
    assert a != b and a[0].startswith("99_tiny__DEVICE=cuda_0-")
    long1, long2 = folder({"BLOCK": "x" * 90 + "1"}), folder({"BLOCK": "x" * 90 + "2"})
    assert long1 != long2 and len(long1[0]) < 80
    # OUT_DIR is never part of it, and the user cannot set it
    runs = nbrun.plan([tiny], {}, [{}], out, {"LR": "0.3"})
    assert runs[0].params["OUT_DIR"] == str(out / nbrun.ATTEMPTS / "99_tiny__LR=0.3")
    assert "OUT_DIR" not in runs[0].resolved
    with pytest.raises(nbrun.UsageError, match="OUT_DIR is set by the runner"):
        nbrun.plan([tiny], {}, [{}], out, {"OUT_DIR": "/tmp/x"})


def test_a_folder_with_other_recorded_parameters_is_never_reused(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    # a completed default run made when the notebook's default LR was 0.2
    _done(out / "99_tiny", {"LR": 0.2}, {"acc": 0.7})
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    rc = nbrun.main([str(tiny), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "holds a completed run with other parameters" in err
    assert "LR=0.2 there, 0.1 now" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("name, raw, value", [
    ("LR", "1e-5", 1e-5), ("LR", "1e-05", 1e-5), ("LR", "1E5", 1e5), ("LR", ".5", 0.5),
    ("LR", "-3", -3.0), ("LR", "1_000", 1000.0), ("LR", "inf", float("inf")),
    ("LR", "-.5e3", -500.0), ("STEPS", "1_000", 1000), ("STEPS", "1e3", 1000),
    ("STEPS", "-3", -3), ("SEEDS", "[0, 1e1]", [0, 10.0]),
    ("DEVICE", "1e-5", "1e-5"), ("DEVICE", "2024-01-01", "2024-01-01"),
    ("DEVICE", "cuda:0", "cuda:0"), ("DEVICE", "a: b # c", "a: b # c"), ("DEVICE", "", ""),
    ("DEVICE", "null", "null"), ("FAIL", "true", True),
])
def test_numbers_people_type(tiny, tmp_path, name, raw, value):
    out = tmp_path / "prep"
    assert nbrun.main([str(tiny), "-p", name, raw, "--prepare-only", "--out", str(out),
                       "--no-progress"]) == 0
    (prepared,) = out.glob("*.ipynb")
    cell = next(c for c in nbformat.read(prepared, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", []))
    node = {n.targets[0].id: n.value for n in ast.parse(cell.source).body}[name]
    if isinstance(node, ast.Call):  # papermill writes float('inf'), not a literal
        assert ast.unparse(node) in ("float('inf')", "float('-inf')")
        got = float(node.args[0].value)
    else:
        got = ast.literal_eval(node)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("name, raw, words", [
    ("STEPS", "1.5", ["STEPS expects int", "got float 1.5"]),
    ("LR", "yes", ["LR expects float", "got str 'yes'"]),
    ("SEEDS", "!!binary aGk=", ["bytes is not a parameter value"]),
    ("SEEDS", "[!!set {a: null}]", ["set is not a parameter value"]),
    ("SEEDS", "{1: a}", ["non-string keys"]),
])
def test_values_that_are_not_plain_literals_are_refused(tiny, tmp_path, capsys, name, raw, words):
    assert nbrun.main([str(tiny), "-p", name, raw, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not (tmp_path / "o").exists()


def _one_line_usage_error(capsys, argv: list[str]) -> str:
    assert nbrun.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbrun: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_bad_input_gives_one_line_and_writes_nothing(tiny, tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    before = set(tmp_path.rglob("*"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    before.add(a_file)
    line = _one_line_usage_error(capsys, [str(tiny), "--out", str(a_file)])
    assert "is a file" in line
    line = _one_line_usage_error(capsys, [str(tiny), "--out", str(a_file / "sub")])
    assert "is a file" in line
    if Path("/proc/self").exists():  # not writable, even for root
        line = _one_line_usage_error(capsys, [str(tiny), "--out", "/proc/nbrun-test/out"])
        assert "cannot write in /proc" in line
    broken = tmp_path / "nbs" / "97_broken.ipynb"
    broken.write_text('{"cells": [\n  {"cell_type": "code",,}\n]}')
    before.add(broken)
    line = _one_line_usage_error(capsys, [str(broken), "--out", str(base / "o")])
    assert "97_broken.ipynb is not a notebook: invalid JSON at line 2" in line
    grid = tmp_path / "grid.yaml"
    grid.write_text("LR: [0.1, 0.2]\nSEEDS: [[0], [1]\nFAIL: false\n")
    before.add(grid)
    line = _one_line_usage_error(capsys, [str(tiny), "--grid", str(grid), "--out",
                                          str(base / "o")])
    assert f"grid {grid}, line 3" in line
    for empty in ("", "[]", "{}", "LR: []\n", "# nothing\n"):
        grid.write_text(empty)
        line = _one_line_usage_error(capsys, [str(tiny), "--grid", str(grid), "--out",
                                              str(base / "o")])
        assert "holds no parameter sets" in line, (empty, line)
    assert set(tmp_path.rglob("*")) == before  # nothing partial written


def test_the_same_notebook_named_twice_runs_once(tiny, tmp_path, capsys, monkeypatch):
    other = tmp_path / "link.ipynb"
    other.symlink_to(tiny)
    monkeypatch.chdir(tiny.parent)
    out = tmp_path / "prep"
    assert nbrun.main([str(tiny), tiny.name, f"../nbs/{tiny.name}", str(other),
                       "--prepare-only", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("99_tiny  prepared") == 1, printed
    # two different notebooks with one name would share a folder: refused
    twin = make_notebook(tmp_path / "elsewhere" / "99_tiny.ipynb")
    line = _one_line_usage_error(capsys, [str(tiny), str(twin), "--out", str(tmp_path / "o2")])
    assert "would share" in line


def test_an_interrupted_swap_is_finished(tmp_path):
    """Killed between moving the old run aside and moving the new one in: nothing is lost."""
    out = tmp_path / "o"
    new = _done(out / nbrun.ATTEMPTS / "99_tiny", {"LR": 0.1}, {"acc": "new"})
    _done(out / nbrun.ATTEMPTS / nbrun.REPLACED / "99_tiny", {"LR": 0.1}, {"acc": "old"})
    nbrun.recover(out)
    assert json.loads((out / "99_tiny" / "metrics.json").read_text()) == {"acc": "new"}
    assert not new.exists() and not list((out / nbrun.ATTEMPTS / nbrun.REPLACED).iterdir())
    # killed before the new run completed: the old one is put back
    _done(out / nbrun.ATTEMPTS / nbrun.REPLACED / "98_x", {}, {"acc": "old"})
    (out / nbrun.ATTEMPTS / "98_x").mkdir()
    nbrun.recover(out)
    assert json.loads((out / "98_x" / "metrics.json").read_text()) == {"acc": "old"}


def test_killing_the_runner_kills_its_workers_and_kernels(tmp_path):
    """SIGKILL to the runner's pid only: its pool workers and kernels must not live on."""
    import psutil

    block = tmp_path / "block"
    block.write_text("wait")
    blocked = PARAMS.replace('BLOCK: str = ""', f'BLOCK: str = "{block}"')
    nbs = [make_notebook(tmp_path / "nbs" / f"9{i}_sleep.ipynb", blocked) for i in range(3)]
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "mtlkit.nbrun", *map(str, nbs), "--out",
                             str(out), "--jobs", "2", "--no-progress"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family: list = []
    try:
        deadline = time.time() + 90
        while len(list(out.glob("**/count.txt"))) < 2:  # both kernels are busy in cell 2
            assert time.time() < deadline and proc.poll() is None, "runner did not get there"
            time.sleep(0.2)
        family = psutil.Process(proc.pid).children(recursive=True)
        kernels = [p for p in family if "ipykernel" in " ".join(p.cmdline())]
        assert len(kernels) == 2, [p.cmdline() for p in family]
        os.kill(proc.pid, signal.SIGKILL)  # the runner alone, not its process group
        proc.wait()
        block.unlink()  # a surviving worker would finish its run and start the queued one

        def alive() -> list:
            found = []
            for p in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                        found.append(p)
            return found

        deadline = time.time() + 10
        while alive() and time.time() < deadline:
            time.sleep(0.2)
        assert not alive(), [(p.pid, p.cmdline()) for p in alive()]
        time.sleep(1.0)
        assert not list(out.glob("**/92_sleep.ipynb"))  # the queued run never began
        assert not list(out.glob("9*_sleep/_done.json"))  # nothing completed after the kill
    finally:
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


NASTY = ["it's \"quoted\"", "back\\slash\\", "C:\\new\\table", "two\nlines\r\n\ttab",
         '"; import os; os.system("touch PWNED") #', "\"\"\"; open('PWNED', 'w') #",
         "\\\"; open('PWNED', 'w') #", "'''", "${HOME} $(touch PWNED) `touch PWNED`",
         "uni ✓ é \U0001f600", "{a: b}", "[1, 2]", "- x", "null", "1e-5", " pad ", "", "# c"]


def test_parameters_reach_the_kernel_as_literals(tmp_path):
    """Strings with quotes, backslashes, newlines and code go in as the exact literal."""
    params = PARAMS + "\nTEXT: str = ''  # free text\nTEXTS: list = []  # texts\nANY = None  # any"
    seen = '(out / "seen.json").write_text(json.dumps({"TEXT": TEXT, "TEXTS": TEXTS, "ANY": ANY}))'
    nb = make_notebook(tmp_path / "nbs" / "96_literal.ipynb", params, (seen,))
    text = " | ".join(NASTY)
    anything = {"k\"ey'": [NASTY[4], {"x\ny": 1.5, "z": None}], "\\": [True, -3]}
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mtlkit.nbrun", str(nb), "--out", str(out), "--no-progress",
           "-p", "TEXT", text, "-p", "TEXTS", json.dumps(NASTY, ensure_ascii=False),
           "-p", "ANY", json.dumps(anything, ensure_ascii=False)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in out.glob("96_literal__*") if p.is_dir()]
    expected = {"TEXT": text, "TEXTS": NASTY, "ANY": anything}
    assert json.loads((run_dir / "seen.json").read_text()) == expected  # what the kernel saw
    executed = nbformat.read(run_dir / "96_literal.ipynb", as_version=4)
    (cell,) = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    tree = ast.parse(cell.source)
    assert all(isinstance(n, ast.Assign) and len(n.targets) == 1
               and isinstance(n.targets[0], ast.Name) for n in tree.body), cell.source
    injected = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body}
    assert {k: injected[k] for k in expected} == expected
    assert set(injected) == {*expected, "OUT_DIR"}
    assert not list(tmp_path.rglob("PWNED"))
    # a YAML value that is not a plain literal never reaches papermill, which would paste
    # its str() between quotes: b'" + str(open("PWNED", "w")) + "' runs open()
    payload = base64.b64encode(b'" + str(open("PWNED", "w")) + "').decode()
    for bad in (f"!!binary {payload}", f"[!!binary {payload}]"):
        proc = subprocess.run([*cmd[:7], "-p", "ANY", bad, "--force"], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and "bytes is not a parameter value" in proc.stderr
    assert not list(tmp_path.rglob("PWNED"))


def test_batch_kernels_run_with_inert_widgets(tmp_path, monkeypatch):
    """A batch kernel gets MTLKIT_WIDGETS=off, so after nb.setup an interact cell opens no
    widget and never calls its function (a live one sometimes hangs nbclient); without the
    variable the same call runs the function at once, as ipywidgets does."""
    monkeypatch.delenv("MTLKIT_WIDGETS", raising=False)
    cell = '''import mtlkit.nb as nb
cfg = nb.setup(globals(), quiet=True)
from ipywidgets import interact, interact_manual
calls = []
interact(lambda x: calls.append(x), x=1)
interact_manual(lambda x: calls.append(x), x=2)
(out / "widgets.json").write_text(json.dumps({"env": os.environ.get("MTLKIT_WIDGETS"),
                                              "calls": calls}))'''
    nb = make_notebook(tmp_path / "nbs" / "95_widgets.ipynb", extra=(cell,))
    out = tmp_path / "runs"
    assert nbrun.main([str(nb), "--out", str(out), "--no-progress"]) == 0
    (run_dir,) = [p for p in out.glob("95_widgets*") if p.is_dir()]
    assert json.loads((run_dir / "widgets.json").read_text()) == {"env": "off", "calls": []}


FLAKY_KERNEL = '''import os, pathlib, sys
count = pathlib.Path(os.environ["KERNEL_STARTS_FILE"])
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if n <= int(os.environ["KERNEL_DEATHS"]):
    sys.exit(1)  # as a kernel whose port was taken meanwhile: dead before its first reply
from ipykernel import kernelapp
kernelapp.launch_new_instance()
'''


def _flaky_kernel(tmp_path, monkeypatch, deaths: int) -> Path:
    """Make the python3 kernel die at its first ``deaths`` starts; the file counting starts."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "flaky.py").write_text(FLAKY_KERNEL)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(spec / "flaky.py"), "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("KERNEL_DEATHS", str(deaths))
    monkeypatch.setenv("KERNEL_STARTS_FILE", str(tmp_path / "starts"))
    return tmp_path / "starts"


def test_a_kernel_that_dies_before_its_first_reply_is_started_again(tmp_path, monkeypatch,
                                                                      tiny):
    starts = _flaky_kernel(tmp_path, monkeypatch, deaths=1)
    out = tmp_path / "runs"
    assert nbrun.main([str(tiny), "--out", str(out), "--no-progress"]) == 0
    assert starts.read_text() == "2"
    done = json.loads((out / "99_tiny" / nbrun.DONE).read_text())
    assert done["status"] == "ok" and done["kernel_starts"] == 2


def test_a_kernel_that_never_starts_fails_the_run_after_three_tries(tmp_path, monkeypatch,
                                                                     tiny):
    from mtlkit.batch.execute import KERNEL_START_TRIES, STARTUP_FAILURE

    starts = _flaky_kernel(tmp_path, monkeypatch, deaths=99)
    out = tmp_path / "runs"
    assert nbrun.main([str(tiny), "--out", str(out), "--no-progress"]) == 1
    assert int(starts.read_text()) == KERNEL_START_TRIES == 3
    err = json.loads((out / nbrun.ATTEMPTS / "99_tiny" / nbrun.ERROR).read_text())
    assert STARTUP_FAILURE in err["error"] and not (out / "99_tiny").exists()
