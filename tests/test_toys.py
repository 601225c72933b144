"""The CAGrad/Nash-MTL two-task toy: losses, gradients, trajectories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlkit import weighting as W
from mtlkit.theory.toys import (
    STARTS_CAGRAD,
    STARTS_NASH,
    front_gap,
    landscape,
    pareto_points,
    run_trajectory,
    toy_grads,
    toy_losses,
)


def hand_losses(x1: float, x2: float, scale: float = 1.0) -> tuple[float, float]:
    """The toy written out again with math (an independent transcription)."""
    def h(u):
        return np.log(max(abs(u), 5e-6)) + 6
    th = np.tanh(-x2)
    c1, c2 = max(np.tanh(x2 / 2), 0), max(np.tanh(-x2 / 2), 0)
    b1 = ((7 - x1) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    b2 = ((-7 - x1) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    return (scale * (c1 * h(0.5 * (-x1 - 7) - th) + c2 * b1),
            c1 * h(0.5 * (3 - x1) + th + 2) + c2 * b2)


@pytest.mark.parametrize("pt", [(-8.5, 7.5), (9.0, 9.0), (-7.5, -0.5), (3.0, -4.0), (1.0, 2.0)])
@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_losses_and_gradients_against_hand_and_finite_differences(pt, scale):
    x = torch.tensor(pt, dtype=torch.float64)
    losses, g = toy_grads(x, scale)
    np.testing.assert_allclose(losses.numpy(), hand_losses(*pt, scale), rtol=1e-12)
    h = 1e-6
    for k in range(2):
        e = np.eye(2)[k] * h
        fd = (np.array(hand_losses(*(np.array(pt) + e), scale))
              - np.array(hand_losses(*(np.array(pt) - e), scale))) / (2 * h)
        np.testing.assert_allclose(g[:, k].numpy(), fd, rtol=1e-5, atol=1e-7)


def test_batched_losses_match_pointwise():
    xx, yy, f = landscape(n=7)
    for i, j in [(0, 0), (3, 4), (6, 2)]:
        np.testing.assert_allclose(f[:, i, j], hand_losses(xx[i, j], yy[i, j]), rtol=1e-12)


def test_ew_trajectory_descends_the_average_loss():
    path = run_trajectory(W.get("EW"), STARTS_CAGRAD[0], steps=300, lr=0.05)
    avg = toy_losses(torch.tensor(path)).mean(-1).numpy()
    assert avg[-1] < avg[0] - 1.0
    assert np.isfinite(path).all() and path.shape == (301, 2)


def test_mgda_trajectory_never_increases_either_loss_much():
    # MGDA follows a common descent direction: with small SGD steps both losses decrease
    path = run_trajectory("MGDA", STARTS_NASH[3], steps=200, lr=0.01, optimizer="sgd")
    f = toy_losses(torch.tensor(path)).numpy()
    assert (np.diff(f, axis=0) <= 1e-6).all()


def test_pareto_points_are_mutually_non_dominated():
    _, f = pareto_points(n=60)
    for a in f:
        dominated = (f <= a).all(1) & (f < a).any(1)
        assert not dominated.any()


def test_front_gap_is_zero_on_the_front_and_the_distance_off_it():
    x, f = pareto_points(n=60, scale=0.1)
    assert front_gap(x[7], f, 0.1) == pytest.approx(0.0, abs=1e-12)
    far = np.array([9.0, 9.0])
    losses = toy_losses(torch.tensor(far), 0.1).numpy()
    brute = min(float(np.hypot(*(losses - q))) for q in f)  # every front point, by hand
    assert front_gap(far, f, 0.1) == pytest.approx(brute, rel=1e-12) and brute > 1


def test_bad_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        run_trajectory("EW", (0.0, 0.0), steps=1, optimizer="lbfgs")
