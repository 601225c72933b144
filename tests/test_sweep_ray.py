"""The sweep on a real Ray cluster: a head and one worker node started on loopback
(``ray start``, CPU only, one CPU each), no mocks. The runner connects with ``--address``;
a Ray worker executing a run is killed mid-sweep (twice: one retry, then reported), and the
resume must run exactly the missing runs (:func:`tests.test_sweep.check_kill_and_resume`,
which the local pool passes too). The cluster is stopped after the module (``ray stop``).

Skipped when Ray is not installed (``pip install 'mtlkit[ray]'``; ``scripts/setup.sh``
installs it). The copy-back test is heavier (a second sweep through the cluster): it runs
when ``MTLKIT_HEAVY_TESTS=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mtlkit import nbrun

pytest.importorskip("ray")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_sweep import (  # noqa: E402 (after the skip: without Ray nothing here runs)
    ROOT,
    check_kill_and_resume,
    make_notebook,
    write_sweep,
)

heavy = pytest.mark.skipif(not os.environ.get("MTLKIT_HEAVY_TESTS"),
                           reason="heavier Ray test: set MTLKIT_HEAVY_TESTS=1")
START_TIMEOUT_S = 180
START_ATTEMPTS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _ray(args: list[str], env: dict[str, str]) -> str:
    """Run ``ray ARGS``; the error output if it failed ("" if it worked)."""
    proc = subprocess.run([_ray_cli(), *args], env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT_S)
    return "" if proc.returncode == 0 else f"ray {' '.join(args)}:\n{proc.stderr[-2000:]}"


def _stop(env: dict[str, str]) -> None:
    subprocess.run([_ray_cli(), "stop", "--force"], env=env, capture_output=True, timeout=120)


def _start_cluster(env: dict[str, str], temp: str) -> str:
    """A head and a worker node; their address. A node's raylet gives up when the node's
    agent process takes more than a few seconds to start, which happens on a loaded 2-core
    machine: each start is tried a few times."""
    common = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20),
              "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    error = ""
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        error = _ray(["start", "--head", "--port", str(port), "--include-dashboard=false",
                      "--temp-dir", f"{temp}/{attempt}", *common], env)
        if not error:
            break
        _stop(env)  # what the failed head left running
    else:
        raise AssertionError(f"the Ray head did not start in {START_ATTEMPTS} tries:\n{error}")
    address = f"127.0.0.1:{port}"
    for _ in range(START_ATTEMPTS):
        error = _ray(["start", "--address", address, *common], env)
        if not error:
            _wait_for_nodes(address, 2, env)
            return address
    raise AssertionError(f"the Ray worker node did not start in {START_ATTEMPTS} tries:\n{error}")


@pytest.fixture(scope="module")
def cluster():
    """``ray start`` a head and a worker node on 127.0.0.1 (1 CPU each); their address.
    Stopped after the module (``ray stop --force``), whatever happened."""
    temp = tempfile.mkdtemp(prefix="mtlkit-ray-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        yield _start_cluster(env, temp)
    finally:
        _stop(env)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_nodes(address: str, n: int, env: dict[str, str]) -> None:
    code = ("import ray, time, sys\n"
            f"ray.init(address='{address}', log_to_driver=False)\n"
            "t0 = time.time()\n"
            f"while len([x for x in ray.nodes() if x['Alive']]) < {n}:\n"
            f"    assert time.time() - t0 < {START_TIMEOUT_S}, ray.nodes()\n"
            "    time.sleep(0.5)\n")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=START_TIMEOUT_S)


def test_ray_runs_kill_a_worker_retry_and_resume(tmp_path, cluster):
    nb = make_notebook(tmp_path / "nbs" / "98_sweep.ipynb")
    check_kill_and_resume(tmp_path, nb, ["--backend", "ray", "--address", cluster])


@heavy
def test_ray_copy_back_lands_in_the_same_layout(tmp_path, cluster):
    nb = make_notebook(tmp_path / "nbs" / "98_sweep.ipynb")
    f = write_sweep(tmp_path / "sweep.yaml", f"notebooks: [{nb}]\ngrid: {{X: [1, 2]}}\n"
                    "seeds: [0, 1]\nresources: {cpus: 1, memory: 64MiB}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mtlkit.nbrun", "--sweep", str(f), "--out", str(out),
           "--no-progress", "--backend", "ray", "--address", cluster, "--copy-back"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["98_sweep__SEEDS=0,X=1", "98_sweep__SEEDS=0,X=2",
                     "98_sweep__SEEDS=1,X=1", "98_sweep__SEEDS=1,X=2"]
    for name in names:
        done = json.loads((out / name / "_done.json").read_text())
        assert not done["executed_in"].startswith(str(out))  # the worker's own folder
        x, seed = done["resolved"]["X"], done["resolved"]["SEEDS"][0]
        assert json.loads((out / name / "metrics.json").read_text())["y"] == x * x + 10 * seed
        assert (out / name / "98_sweep.ipynb").is_file()
    assert (out / "sweep.csv").is_file() and (out / "metrics.csv").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("already completed") == 4
    assert time.monotonic() - t0 < 600
    assert nbrun.ATTEMPTS not in names
