"""Verdicts from confidence intervals over seeds (mtlkit.verdicts, nb.finding)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlkit import nb, verdicts
from mtlkit.results import make_records


def test_paired_interval_is_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(0.80, 0.02, 7), index=range(7))
    b = pd.Series(rng.normal(0.78, 0.02, 7), index=range(7))
    c = verdicts.compare(a, b)
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert c.paired and c.n_a == c.n_b == 7
    assert c.diff == pytest.approx(float((a - b).mean()))
    assert (c.lo, c.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)


def test_welch_interval_is_scipys_and_lower_is_better_flips_the_sign():
    a, b = [1.0, 1.3, 0.9, 1.2], [2.0, 2.4, 1.7, 2.2, 2.1]
    c = verdicts.compare(a, b, higher_is_better=False, names=("M", "EW"), metric="t/rmse")
    ref = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)  # B − A: A better
    assert not c.paired
    assert (c.lo, c.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert c.outcome == "better" and "M − EW on t/rmse" in str(c)


@pytest.mark.parametrize("a,b,outcome", [
    ([0.9, 0.91, 0.92], [0.5, 0.52, 0.51], "better"),
    ([0.5, 0.52, 0.51], [0.9, 0.91, 0.92], "worse"),
    ([0.5, 0.9, 0.1], [0.52, 0.4, 0.6], "indistinguishable"),
    ([0.9], [0.1], "indistinguishable"),  # one seed: no verdict
])
def test_outcomes(a, b, outcome):
    assert verdicts.compare(a, b).outcome == outcome


def test_comparable_needs_the_whole_interval_inside_the_margin():
    a = pd.Series([0.800, 0.801, 0.799, 0.800], index=range(4))
    b = pd.Series([0.800, 0.800, 0.800, 0.801], index=range(4))
    c = verdicts.compare(a, b)
    assert c.comparable(0.01) and not c.comparable(1e-5)
    assert not verdicts.compare([0.8], [0.8]).comparable(0.5)  # infinite interval


def test_paired_needs_the_same_seeds():
    with pytest.raises(ValueError, match="same"):
        verdicts.compare(pd.Series([1.0, 2.0], index=[0, 1]), pd.Series([1.0, 2.0], index=[0, 2]),
                         paired=True)


def _records(method: str, seed: int, acc: float) -> pd.DataFrame:
    rows = pd.DataFrame({"task": ["a", "a"], "metric": ["acc", "acc"], "value": [acc - 0.1, acc],
                         "split": ["test", "test"], "epoch": [1, 2]})
    return make_records(rows, run_id=f"{method}-{seed}", dataset="d", architecture="HPS",
                        method=method, hparams={}, seed=seed, device="cpu", wall_time=1.0,
                        chosen_epoch=2)


def test_compare_methods_reads_the_selected_epoch_per_seed():
    recs = pd.concat([_records("M", s, 0.9 + 0.01 * s) for s in range(3)]
                     + [_records("EW", s, 0.8 + 0.01 * s) for s in range(3)])
    c = verdicts.compare_methods(recs, "M", "EW", "a", "acc")
    assert c.paired and c.diff == pytest.approx(0.1) and c.lo == pytest.approx(0.1)
    assert verdicts.outcome_counts([c, c]) == {"better": 2, "worse": 0, "indistinguishable": 0}
    with pytest.raises(ValueError, match="no test records of 'X'"):
        verdicts.compare_methods(recs, "X", "EW", "a", "acc")


def test_finding_records_without_asserting(tmp_path):
    nb.setup({"PROFILE": "smoke", "SEEDS": [0], "DEVICE": "cpu", "OUT_DIR": str(tmp_path)},
             quiet=True)
    assert nb.finding("M beats EW", False, "CI below 0", source="§6.3") == "not supported"
    assert nb.finding("M ties EW", None) == "inconclusive"
    assert nb.finding("M helps", np.bool_(True)) == "supported"
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert [c["verdict"] for c in saved] == ["not supported", "inconclusive", "supported"]
    assert all(c["kind"] == "finding" for c in saved)


def test_report_counts_findings_apart_from_checked_claims():
    from mtlkit.batch.report import claim_counts

    claims = [{"ok": True, "expect": True}, {"ok": False, "expect": True},
              {"kind": "finding", "ok": False, "expect": None}]
    assert claim_counts(claims) == (1, 1)
    assert math.isfinite(verdicts.LEVEL)
