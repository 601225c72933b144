"""No loader touches the network: every loader runs in a subprocess inside a network
namespace with no interfaces (``unshare -n``), on the embedded data and on benchmark
fixtures.  (The other data test files also replace ``socket.socket`` in-process.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.util, socket, sys, tempfile
    from pathlib import Path
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=2)
        sys.exit("network is reachable: unshare did not isolate this process")
    except OSError:
        pass
    from mtlkit.data import registry
    spec = importlib.util.spec_from_file_location("data_fixtures", sys.argv[1])
    fx = importlib.util.module_from_spec(spec); sys.modules["data_fixtures"] = fx
    spec.loader.exec_module(fx)
    small = {"topics": dict(n_per_task=40), "sentiment": dict(n_per_task=40),
             "multimnist": dict(n_train=20, n_val=10, n_test=10),
             "multifashion": dict(n_train=20, n_val=10, n_test=10),
             "multi_fashion_mnist": dict(n_train=20, n_val=10, n_test=10),
             "scenes": dict(n_train=4, n_val=2, n_test=2)}
    for name in registry.names("embedded"):
        d = registry.load(name, cache=False, **small[name])
        print(name, d.sizes()["train"])
    for name, make in fx.MAKERS.items():
        root = Path(tempfile.mkdtemp())
        f = make(root)
        d = registry.load(name, root=root, **f.kwargs)
        ds = d.train[d.task_names[0]] if d.homogeneous else d.train
        ds[0]
        print(name, "ok")
    print("ALL-OFFLINE-OK")
""")


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None:
        return "the `unshare` command is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`unshare -n` is not permitted here ({probe.stderr.strip()}); needs root"
    return None


def test_every_loader_works_without_a_network(tmp_path):
    reason = _unshare_works()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1"}
    fixtures = REPO / "tests" / "fixtures" / "data_fixtures.py"
    run = subprocess.run(["unshare", "-n", sys.executable, "-c", SCRIPT, str(fixtures)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and "ALL-OFFLINE-OK" in run.stdout, run.stdout + run.stderr
