"""Sweep files, backends (GPU slots, child processes, copy-back), retries of lost workers,
progress, and aggregation; the resume test shared with the Ray backend
(``tests/test_sweep_ray.py``) lives here as :func:`check_kill_and_resume`.

Only the tests marked in their name ``..._runs_...`` start kernels (~2 s each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import write_notebook

from mtlkit import nbrun, results
from mtlkit.batch import aggregate, backends, report, schedule, sweep
from mtlkit.batch.params import UsageError

ROOT = Path(__file__).resolve().parents[1]

PARAMS = '''PROFILE: str = "teach"  # smoke | teach | full
SEEDS: list = [0]  # random seeds
OUT_DIR: str = ""  # outputs
X: int = 0  # the swept value
LR: float = 0.1  # a float parameter
HOLD: int = -1  # the run with X == HOLD waits while BLOCK exists
BLOCK: str = ""  # a file
FAIL: int = -1  # the run with X == FAIL raises while FAILFILE exists
FAILFILE: str = ""  # a file'''

BODY = [
    '''import json, os, pathlib, time
out = pathlib.Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)
(out / "pids.json").write_text(json.dumps({"kernel": os.getpid(), "parent": os.getppid()}))''',
    '''while X == HOLD and BLOCK and os.path.exists(BLOCK):
    time.sleep(0.2)
if X == FAIL and FAILFILE and os.path.exists(FAILFILE):
    raise RuntimeError(f"run X={X} fails")''',
    '''(out / "metrics.json").write_text(json.dumps({
    "y": X * X + 10 * SEEDS[0], "lr": LR,
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset")}))''',
]


def make_notebook(path: Path) -> Path:
    return write_notebook(path, "# 98 · A sweep test notebook", PARAMS, tuple(BODY))


@pytest.fixture
def nb98(tmp_path: Path) -> Path:
    return make_notebook(tmp_path / "nbs" / "98_sweep.ipynb")


def write_sweep(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------- sweep files
def test_sweep_expands_grid_zip_and_seeds(nb98, tmp_path):
    f = write_sweep(tmp_path / "s" / "sweep.yaml", """
notebooks: [../nbs/98_sweep.ipynb]
parameters: {PROFILE: smoke}
grid: {X: [1, 2]}
zip: {LR: [0.5, 0.25], FAIL: [7, 8]}
seeds: [0, 3]
resources: {gpus: 0.5, cpus: 2, memory: 1.5GiB}
retries: 1
""")
    s = sweep.load_sweep(f)
    assert [p.resolve() for p in s.notebooks] == [nb98.resolve()]
    assert s.parameters == {"PROFILE": "smoke"}
    expected = [{"X": x, "LR": lr, "FAIL": fail, "SEEDS": [seed]}
                for x in (1, 2) for lr, fail in ((0.5, 7), (0.25, 8)) for seed in (0, 3)]
    assert s.runs == expected
    assert s.resources == sweep.Resources(gpus=0.5, cpus=2.0, memory=int(1.5 * 2**30))
    assert s.resources.ray_options() == {"num_cpus": 2.0, "num_gpus": 0.5,
                                         "memory": int(1.5 * 2**30)}
    assert s.retries == 1
    runs = nbrun.plan(s.notebooks, s.parameters, s.runs, tmp_path / "o", {},
                      fixed_are_defaults=True)
    names = [r.label for r in runs]
    assert len(set(names)) == 8 and "98_sweep__FAIL=7,LR=0.5,SEEDS=0,X=1" in names
    assert all("PROFILE" not in n for n in names)  # fixed for the sweep: not in the names
    assert all(r.params["PROFILE"] == "smoke" for r in runs)


@pytest.mark.parametrize("text, line, words", [
    ("notebooks: [../nbs/98_sweep.ipynb]\ngird: {X: [1]}\n", 2, ["unknown key 'gird'",
                                                               "valid keys: notebooks"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\ngrid:\n  X: [1, two]\n", 3, ["X expects int"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nparameters:\n  NOPE: 1\n", 3,
     ["unknown parameter(s) NOPE. valid: PROFILE, SEEDS, OUT_DIR, X, LR"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nresources:\n  gpus: 1\n  ram: 4GB\n", 4,
     ["unknown key 'ram' under resources", "gpus, cpus, memory"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nresources: {memory: lots}\n", 2,
     ["memory 'lots' is not a size"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nresources:\n  cpus: 0\n", 3, ["cpus must be"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nzip: {X: [1, 2], LR: [0.1]}\n", 2,
     ["one length", "X: 2, LR: 1"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nseeds: [0, 1]\nparameters:\n  SEEDS: [4]\n", 4,
     ["SEEDS is set by 'seeds'"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nparameters: {X: 1}\ngrid:\n  X: [2]\n", 4,
     ["X is also set under parameters"]),
    ("notebooks:\n  - ../nbs/98_sweep.ipynb\n  - ../nbs/nope_*.ipynb\n", 3,
     ["no notebook matches '../nbs/nope_*.ipynb'"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nretries: -1\n", 2, ["retries must be"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\nseeds: [0, zero]\n", 2, ["seeds must be"]),
    ("notebooks: [../nbs/98_sweep.ipynb]\ngrid: {X: []}\n", 2, ["non-empty list"]),
    ("notebooks: [../nbs/98_sweep.ipynb\n", 2, ["sweep", "expected"]),
])
def test_bad_sweep_gives_one_line_with_file_and_line_and_writes_nothing(
        nb98, tmp_path, capsys, text, line, words):
    f = write_sweep(tmp_path / "s" / "sweep.yaml", text)
    out = tmp_path / "o"
    assert nbrun.main(["--sweep", str(f), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"nbrun: error: sweep {f}, line {line}"), err
    for w in words:
        assert w in err[0]
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["--grid", "g.yaml"], "drop the notebooks and --grid"),
    (["--copy-back"], "--address and --copy-back are for --backend ray"),
    (["--retries", "-1"], "--retries -1"),
    (["-p", "X", "3"], "-p X: swept in"),
])
def test_sweep_options_that_contradict_it_are_refused(nb98, tmp_path, capsys, argv, words):
    f = write_sweep(tmp_path / "s" / "sweep.yaml",
                    "notebooks: [../nbs/98_sweep.ipynb]\ngrid: {X: [1, 2]}\n")
    assert nbrun.main(["--sweep", str(f), "--out", str(tmp_path / "o"), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ray_backend_without_ray_says_how_to_install(nb98, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert nbrun.main([str(nb98), "--backend", "ray", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nbrun: error: --backend ray needs Ray, which is not installed: "
                   f"pip install 'mtlkit[ray]' (ray=={backends.RAY_VERSION})"]
    assert not (tmp_path / "o").exists()


def test_ray_extra_is_pinned_to_the_version_the_runner_names():
    text = (ROOT / "pyproject.toml").read_text()
    assert f'ray = [\n    "ray[default]=={backends.RAY_VERSION}",' in text or \
        f'"ray=={backends.RAY_VERSION}"' in text


def test_memory_sizes():
    assert sweep.parse_memory(1000) == 1000
    assert sweep.parse_memory("512MiB") == 512 * 2**20
    assert sweep.parse_memory("8GB") == 8 * 10**9
    assert sweep.parse_memory("1.5 gib") == int(1.5 * 2**30)
    for bad in ("-1GB", "8XB", True, 0, "GB"):
        with pytest.raises(UsageError):
            sweep.parse_memory(bad)


# ------------------------------------------------------------ GPUs, progress
def test_gpu_slots_one_per_run_groups_and_shares():
    four = ["0", "1", "2", "3"]
    assert backends.gpu_slots(four, 1) == four
    assert backends.gpu_slots(four, 2) == ["0,1", "2,3"]
    assert backends.gpu_slots(four, 3) == ["0,1,2"]  # the fourth GPU cannot host a run
    assert backends.gpu_slots(["5", "7"], 0.5) == ["5", "5", "7", "7"]
    assert backends.gpu_slots(["5", "7"], 1 / 3) == ["5"] * 3 + ["7"] * 3
    assert backends.gpu_slots(four, 0) == [] and backends.gpu_slots([], 1) == []
    with pytest.raises(UsageError, match="asks for 5 GPUs but this machine offers 4"):
        backends.gpu_slots(four, 5)


def test_visible_gpus_reads_cuda_visible_devices():
    assert backends.visible_gpus({"CUDA_VISIBLE_DEVICES": "3, 5"}) == ["3", "5"]
    assert backends.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert backends.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_eta_is_time_per_finished_run_times_runs_left():
    assert schedule.eta_seconds(10.0, 0, 5) is None
    assert schedule.eta_seconds(10.0, 2, 5) == pytest.approx(15.0)
    assert schedule.eta_seconds(10.0, 5, 5) == 0
    assert schedule.hms(3723) == "1:02:03" and schedule.hms(None) == "?"
    p = schedule.Progress(6)
    p.ok, p.failed, p.running = 2, 1, 2
    assert p.line().startswith("[3/6 done: 2 ok, 1 failed; 2 running, 1 queued; ETA ")


def test_pack_unpack_round_trip_and_refuses_escapes(tmp_path):
    src = tmp_path / "src"
    (src / "figures").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "figures" / "f.png").write_bytes(b"\x89PNG")
    data = backends.pack(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.txt").write_text("old attempt")
    backends.unpack(data, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "a.txt", "figures", "figures/f.png"]
    assert (dest / "a.txt").read_text() == "alpha"
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="refusing"):
        backends.unpack(buf.getvalue(), tmp_path / "dest2")
    assert not (tmp_path / "evil.txt").exists()


# ------------------------------------------------------------- aggregation
def _records(method: str, seed: int, miou: float, err: float, wall: float) -> pd.DataFrame:
    rows = pd.DataFrame({"task": ["seg", "depth"], "metric": ["miou", "abs_err"],
                         "value": [miou, err], "split": ["test", "test"], "epoch": [1, 1]})
    return results.make_records(rows, run_id=f"{method}-s{seed}", dataset="toy",
                                architecture="hps", method=method, hparams={}, seed=seed,
                                device="cpu", wall_time=wall, chosen_epoch=1)


def _fake_run(out: Path, name: str, params: dict, records: list[pd.DataFrame]) -> None:
    d = out / name
    d.mkdir(parents=True)
    (d / "98_sweep.ipynb").write_text("{}")
    (d / "_done.json").write_text(json.dumps({"status": "ok", "notebook": "98_sweep.ipynb",
                                              "resolved": params, "wall_s": 1.0,
                                              "host": "node-a", "finished": "now"}))
    pd.concat(records).to_csv(d / "records.csv", index=False)


def test_aggregate_recomputes_the_table_from_every_run_taking_each_method_seed_once(tmp_path):
    out = tmp_path / "o"
    # run a: EW and UW for seed 0; run b: EW (again, other numbers) and UW for seed 1
    _fake_run(out, "98_sweep__METHODS=UW,SEEDS=0", {"METHODS": ["UW"], "SEEDS": [0]},
              [_records("EW", 0, 0.40, 2.0, 1.0), _records("UW", 0, 0.50, 1.5, 2.0)])
    _fake_run(out, "98_sweep__METHODS=UW,SEEDS=1", {"METHODS": ["UW"], "SEEDS": [1]},
              [_records("EW", 1, 0.60, 4.0, 1.0), _records("UW", 1, 0.70, 3.0, 2.0)])
    _fake_run(out, "98_sweep__METHODS=DWA,SEEDS=0", {"METHODS": ["DWA"], "SEEDS": [0]},
              [_records("EW", 0, 0.99, 9.0, 5.0), _records("DWA", 0, 0.44, 2.2, 1.0)])
    (out / "_attempts" / "98_sweep__METHODS=DWA,SEEDS=1").mkdir(parents=True)
    (out / "_attempts" / "98_sweep__METHODS=DWA,SEEDS=1" / "_error.json").write_text(
        json.dumps({"status": "failed", "error": "boom", "resolved": {"METHODS": ["DWA"],
                                                                      "SEEDS": [1]}}))
    written = aggregate.collect(out)
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"sweep.csv", "records/98_sweep.csv", "tables/98_sweep.md", "tables/98_sweep.csv",
            "figures/98_sweep_delta_p.png"} <= names
    table = pd.read_csv(out / "sweep.csv")
    assert sorted(table["status"]) == ["failed", "ok", "ok", "ok"]
    assert set(table["host"].dropna()) == {"node-a"}
    assert "METHODS" in table.columns and "SEEDS" in table.columns
    assert table.loc[table["status"] == "failed", "error"].item() == "boom"
    # EW seed 0 comes from the first run by folder name (DWA's run), never twice
    recs = pd.read_csv(out / "records" / "98_sweep.csv")
    ew0 = recs[(recs["method"] == "EW") & (recs["seed"] == 0)]
    assert set(ew0["run"]) == {"98_sweep__METHODS=DWA,SEEDS=0"} and len(ew0) == 2
    # Δp by hand: mean over tasks of the signed relative change of the mean over seeds
    ew = {"miou": np.mean([0.99, 0.60]), "abs_err": np.mean([9.0, 4.0])}
    uw = {"miou": np.mean([0.50, 0.70]), "abs_err": np.mean([1.5, 3.0])}
    dp = 100 * np.mean([(uw["miou"] - ew["miou"]) / ew["miou"],
                        -(uw["abs_err"] - ew["abs_err"]) / ew["abs_err"]])
    flat = pd.read_csv(out / "tables" / "98_sweep.csv", index_col=0)
    assert flat.loc["UW", "Δp/↑"] == pytest.approx(dp)
    assert flat.loc["EW", "Δp/↑"] == pytest.approx(0)
    assert list(flat.index)[0] == "EW" and set(flat.index) == {"EW", "DWA", "UW"}
    page = report.render(out)  # the report shows the recomputed table and its figure
    assert "Tables recomputed from every completed run" in page and "98_sweep</h3>" in page
    assert "data:image/png;base64," in page and "href='sweep.csv'" in page


# ------------------------------------------------------------- executing
def _sweep_for_resume(tmp_path: Path, nb: Path) -> tuple[Path, Path, Path]:
    block, failfile = tmp_path / "block", tmp_path / "failfile"
    f = write_sweep(tmp_path / "sweep.yaml", f"""
notebooks: [{nb}]
parameters: {{HOLD: 3, BLOCK: "{block}", FAIL: 4, FAILFILE: "{failfile}"}}
grid: {{X: [1, 2, 3, 4]}}
retries: 1
""")
    return f, block, failfile


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the runner ended ({proc.returncode}) before {path} appeared:"
                                 f"\n{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{path} did not appear in {timeout} s")
        time.sleep(0.2)


def _kill_worker(stage: Path, proc: subprocess.Popen, before: int | None = None) -> int:
    """Kill the process executing the run in ``stage`` (the parent of its kernel), once it
    is another one than ``before``; its pid."""
    pids = stage / "pids.json"
    while True:
        _wait_for(pids, proc)
        try:
            parent = json.loads(pids.read_text())["parent"]
        except (ValueError, OSError):  # being written, or the attempt folder replaced
            parent = before
        if parent != before:
            break
        time.sleep(0.2)
    os.kill(parent, signal.SIGKILL)
    return parent


def _snapshot(out: Path, names: list[str]) -> dict[str, tuple[str, int]]:
    return {n: ((out / n / "_done.json").read_text(),
                (out / n / "_done.json").stat().st_mtime_ns) for n in names}


def check_kill_and_resume(tmp_path: Path, nb: Path, backend_args: list[str]) -> None:
    """A sweep of 4 runs: X=1, 2 complete; X=3's worker is killed twice (retries: 1, so it
    is retried once, then reported lost); X=4 fails in its notebook. Run again: exactly X=3
    and X=4 execute, and X=1, 2 are neither redone nor touched."""
    f, block, failfile = _sweep_for_resume(tmp_path, nb)
    block.write_text("hold")
    failfile.write_text("fail")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mtlkit.nbrun", "--sweep", str(f), "--out", str(out),
           "--no-progress", *backend_args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(), cwd=tmp_path)
    try:
        stage = out / nbrun.ATTEMPTS / "98_sweep__X=3"
        first = _kill_worker(stage, proc)
        _kill_worker(stage, proc, before=first)  # the retry
        text, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, text
    assert "↻ 98_sweep__X=3  worker lost" in text and "retry 1 of 1" in text
    assert "ETA" in text and "done" in text
    done = ["98_sweep__X=1", "98_sweep__X=2"]
    for n in done:
        assert (out / n / "_done.json").is_file()
    error = json.loads((stage / nbrun.ERROR).read_text())
    assert error["status"] == "failed" and "worker lost 2 time(s)" in error["error"]
    assert (stage / "pids.json").is_file()  # the partial attempt is kept
    failed4 = out / nbrun.ATTEMPTS / "98_sweep__X=4"
    assert "run X=4 fails" in json.loads((failed4 / nbrun.ERROR).read_text())["error"]
    assert (failed4 / "98_sweep.ipynb").is_file()  # its partial executed notebook
    status = pd.read_csv(out / "sweep.csv").set_index("X")["status"].to_dict()
    assert status == {1: "ok", 2: "ok", 3: "failed", 4: "failed"}
    before = _snapshot(out, done)
    metrics_before = {n: (out / n / "metrics.json").read_text() for n in done}

    block.unlink()
    failfile.unlink()
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    for n in done:
        assert f"= {n}  already completed" in again.stdout
    ran = sorted(line.split()[1] for line in again.stdout.splitlines()
                 if line.startswith("✓ "))
    assert ran == ["98_sweep__X=3", "98_sweep__X=4"]
    assert _snapshot(out, done) == before  # never redone, never rewritten
    assert {n: (out / n / "metrics.json").read_text() for n in done} == metrics_before
    ys = {x: json.loads((out / f"98_sweep__X={x}" / "metrics.json").read_text())["y"]
          for x in (1, 2, 3, 4)}
    assert ys == {1: 1, 2: 4, 3: 9, 4: 16}
    status = pd.read_csv(out / "sweep.csv").set_index("X")["status"].to_dict()
    assert status == {1: "ok", 2: "ok", 3: "ok", 4: "ok"}
    assert not (out / nbrun.ATTEMPTS).exists()


def test_local_pool_runs_kill_retry_and_resume(tmp_path, nb98):
    check_kill_and_resume(tmp_path, nb98, ["--jobs", "2"])


def test_local_pool_runs_one_gpu_per_run_from_a_fake_gpu_list(tmp_path, nb98, monkeypatch,
                                                               capsys):
    f = write_sweep(tmp_path / "sweep.yaml", f"notebooks: [{nb98}]\ngrid: {{X: [1, 2, 3]}}\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = tmp_path / "out"
    assert nbrun.main(["--sweep", str(f), "--out", str(out), "--no-progress"]) == 0
    seen = {x: json.loads((out / f"98_sweep__X={x}" / "metrics.json").read_text())["cuda"]
            for x in (1, 2, 3)}
    assert seen[1] == "5" and seen[2] == "7" and seen[3] in {"5", "7"}  # one GPU each
    done = json.loads((out / "98_sweep__X=1" / "_done.json").read_text())
    assert done["env"] == {"CUDA_VISIBLE_DEVICES": "5"}
    # --gpus 0 hides the GPUs from every run
    out0 = tmp_path / "out0"
    assert nbrun.main(["--sweep", str(f), "--out", str(out0), "--no-progress", "--gpus", "0",
                       "--jobs", "1"]) == 0
    assert json.loads((out0 / "98_sweep__X=2" / "metrics.json").read_text())["cuda"] == ""


def test_copy_back_task_runs_in_its_own_folder_and_returns_the_files(tmp_path, nb98):
    """The Ray task's code path without Ray: the worker executes in a temporary folder of its
    own (the notebook sent as text, as to a node without the checkout) and returns the files,
    which the runner unpacks and promotes."""
    (run,) = nbrun.plan([nb98], {"X": 6}, [{}], tmp_path / "out", {})
    moved = tmp_path / "elsewhere.ipynb"
    text = nb98.read_text()
    nb98.rename(moved)  # the worker cannot see the notebook: it uses the text sent
    record = backends.ray_execute(run, None, True, text)
    assert record["status"] == "ok"
    assert not str(record["executed_in"]).startswith(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # nothing written into --out by the worker
    moved.rename(nb98)
    files = record.pop("files")
    backends.unpack(files, run.stage)
    nbrun.promote(run.stage, run.run_dir)
    assert nbrun.is_done(run)
    assert json.loads((run.run_dir / "metrics.json").read_text())["y"] == 36


def test_collect_only_writes_the_tables_and_runs_nothing(nb98, tmp_path, capsys):
    out = tmp_path / "o"
    _fake_run(out, "98_sweep__METHODS=UW,SEEDS=0", {"METHODS": ["UW"], "SEEDS": [0]},
              [_records("EW", 0, 0.40, 2.0, 1.0), _records("UW", 0, 0.50, 1.5, 2.0)])
    f = write_sweep(tmp_path / "sweep.yaml", f"notebooks: [{nb98}]\ngrid: {{X: [1, 2]}}\n")
    assert nbrun.main(["--sweep", str(f), "--out", str(out), "--collect-only"]) == 0
    printed = capsys.readouterr().out
    assert f"table: {out / 'tables' / '98_sweep.md'}" in printed
    assert (out / "sweep.csv").is_file() and (out / "metrics.csv").is_file()
    assert not list(out.glob("98_sweep__X=*")) and not (out / nbrun.ATTEMPTS).exists()
    assert "UW" in (out / "tables" / "98_sweep.md").read_text()
