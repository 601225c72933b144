"""Three faults found by comparing the zoo with independent implementations (issue 14),
each checked against a computation that does not use the strategy's code:

* Aligned-MTL on exactly dependent task gradients (a rank decision below the precision
  of the eigen-solver shrank the update to ~1e-7);
* IMTL-G on ill-conditioned, full-rank G (the exact, impartial solution was discarded
  for a biased ridge one);
* Nash-MTL at g_2 = -c g_1 exactly (no bargaining solution exists; the solver's answer
  was used about half of the time in float32).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mtlkit import weighting as W

DTYPES = [torch.float64, torch.float32]


def aligned_reference(g: np.ndarray, rank: int) -> np.ndarray:
    """Aligned-MTL's direction from an SVD of G of the known rank: G_hat = s_min U V^T,
    d = mean of G_hat's rows (Senushkin et al. 2023, Eq. 9-10)."""
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    return (s.min() * u @ vt).mean(0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_aligned_mtl_on_exactly_dependent_rows(dtype):
    row = np.array([1.0, 2, 3, 4, 5])
    g = np.stack([row, -2.3 * row, [0, 1, 0, 1, 0]])  # rank 2
    ref = aligned_reference(g, rank=2)
    assert np.linalg.norm(ref) == pytest.approx(0.435, abs=1e-3)
    d, w = W.get("Aligned-MTL").combine(torch.ones(3, dtype=dtype), torch.tensor(g, dtype=dtype))
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert np.allclose(d.double().numpy(), ref, rtol=tol, atol=tol)
    assert torch.allclose(w.double() @ torch.tensor(g), d.double(), atol=10 * tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(5))
def test_aligned_mtl_rank_deficient_random(dtype, seed):
    """T = 4 gradients spanning 2 dimensions (the other two rows are combinations)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2, 7))
    g = np.vstack([base, rng.normal(size=(2, 2)) @ base])
    ref = aligned_reference(g, rank=2)
    d, _ = W.get("Aligned-MTL").combine(torch.ones(4, dtype=dtype), torch.tensor(g, dtype=dtype))
    tol = 1e-8 if dtype == torch.float64 else 1e-3
    assert np.allclose(d.double().numpy(), ref, rtol=tol, atol=tol * np.linalg.norm(ref))


def test_aligned_mtl_full_rank_unchanged():
    """The rank rule keeps every direction of a well-conditioned G."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3, 6))
    d, _ = W.get("Aligned-MTL").combine(torch.ones(3, dtype=torch.float64), torch.tensor(g))
    assert np.allclose(d.numpy(), aligned_reference(g, rank=3))


ILL = np.array([[-60.0, -70, -30, -10, -70],
                np.array([1, -5, -1, -7, 2]) * 1e-3,
                np.array([3, 0, -5, -2, 7]) * 1e-2])


def projections(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    return (g / np.linalg.norm(g, axis=1, keepdims=True)) @ d


def test_imtl_g_impartial_on_ill_conditioned_full_rank():
    """IMTL-G's defining condition (Liu et al. 2021, Eq. 6): d . u_t equal for all t, and
    sum alpha = 1; solved here independently as a (T+1) x (T+1) linear system."""
    d, alpha = W.get("IMTL", method="grad").combine(torch.ones(3, dtype=torch.float64),
                                                      torch.tensor(ILL))
    p = projections(ILL, d.numpy())
    assert np.allclose(p, p[0], rtol=1e-8), p
    assert p[0] == pytest.approx(-0.0610, abs=1e-4)
    # independent: alpha with sum 1 and (G G^T alpha) . / ||g_t|| equal to a common c
    m, n = ILL @ ILL.T, np.linalg.norm(ILL, axis=1)
    sys = np.block([[m / n[:, None], -np.ones((3, 1))], [np.ones((1, 3)), np.zeros((1, 1))]])
    ref = np.linalg.solve(sys, np.r_[0, 0, 0, 1.0])
    assert np.allclose(alpha.numpy(), ref[:3], rtol=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_imtl_g_impartial_with_norms_over_five_decades(seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(3, 5)) * 10.0 ** rng.uniform(-3, 2, size=(3, 1))
    d, _ = W.get("IMTL", method="grad").combine(torch.ones(3, dtype=torch.float64),
                                                  torch.tensor(g))
    p = projections(g, d.numpy())
    assert np.allclose(p, p[0], rtol=1e-6, atol=1e-12 * np.abs(p).max()), p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2, 5, 50])
def test_nash_mtl_no_solution_for_exactly_opposite_gradients(dtype, p):
    """g_2 = -c g_1: no d has g_1 . d > 0 and g_2 . d > 0, so no alpha satisfies
    alpha_t (G G^T alpha)_t = 1 for both t; every draw must be reported as a failure."""
    rng = np.random.default_rng(p)
    for _ in range(20):
        g1 = rng.normal(size=p) * 10 ** rng.uniform(-3, 3)
        c = float(rng.choice([0.5, 1.0, 2.0, 3.0, 10 ** rng.uniform(-2, 2)]))
        g = torch.tensor(np.stack([g1, -c * g1]), dtype=dtype)
        s = W.get("Nash-MTL")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d, alpha = s.combine(torch.ones(2, dtype=dtype), g)
        assert s.solver_failures == 1, (c, alpha)
        assert torch.equal(alpha, torch.ones(2, dtype=alpha.dtype))  # no earlier weights


def test_nash_bargaining_condition_is_checked_task_by_task():
    from mtlkit.weighting.nash_mtl import is_bargaining_solution

    m = np.array([[1.0, -3.0], [-3.0, 9.0]])
    a = np.array([1e8, 1e8 / 3 + 0.3])  # M a ~ (-0.9, 2.7): relative residual is small
    assert not is_bargaining_solution(m, a)
    good = np.array([1.0, 0.5])
    assert is_bargaining_solution(np.diag(1 / good**2), good)
