"""tests/conftest.py: CI (``make test``) runs hypothesis derandomized, and every test
starts from the same global random state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import conftest
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_profile_is_chosen_by_the_environment():
    assert conftest.hypothesis_profile({"HYPOTHESIS_PROFILE": "ci"}) == "ci"
    assert conftest.hypothesis_profile({"HYPOTHESIS_PROFILE": "dev", "CI": "true"}) == "dev"
    assert conftest.hypothesis_profile({"CI": "true"}) == "ci"
    assert conftest.hypothesis_profile({"CI": "false"}) == "dev"
    assert conftest.hypothesis_profile({}) == "dev"


def test_make_test_runs_hypothesis_derandomized():
    """scripts/test.sh exports HYPOTHESIS_PROFILE=ci, and that profile is derandomized,
    keeps no example database and has no deadline; the default profile stays random."""
    assert "export HYPOTHESIS_PROFILE=ci" in (ROOT / "scripts" / "test.sh").read_text()
    code = ("import conftest; from hypothesis import settings as s; d = s.default; "
            "print(d.derandomize, d.database is None, d.deadline, d.print_blob)")
    out = {}
    for profile in ("ci", "dev"):
        env = {**os.environ, "HYPOTHESIS_PROFILE": profile}
        out[profile] = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", env=env,
                                      capture_output=True, text=True, check=True).stdout.split()
    assert out["ci"] == ["True", "True", "None", "True"]
    assert out["dev"][0] == "False" and out["dev"][2] == "None"


def test_each_test_starts_from_seeded_global_generators():
    """Whatever ran before (another test, or this one's draws), the fixture reseeded."""
    first = (np.random.rand(), torch.rand(1).item())
    np.random.seed(0)
    torch.manual_seed(0)
    assert (np.random.rand(), torch.rand(1).item()) == first


def test_nbval_starts_a_kernel_that_died_before_its_first_reply_again(tmp_path, monkeypatch):
    from nbval.kernel import RunningKernel
    from test_nbrun import _flaky_kernel

    starts = _flaky_kernel(tmp_path, monkeypatch, deaths=1)
    kernel = RunningKernel("python3", cwd=str(tmp_path))
    try:
        assert starts.read_text() == "2"
        assert kernel.is_alive()
    finally:
        kernel.stop()
