"""Conformance with an independent implementation: every strategy that TorchJD (0.18.0, pinned in
the dev extra) shares with mtlkit, on random and degenerate gradient matrices.

TorchJD's aggregators take the T x P matrix G (its "Jacobian") and return the update d; its
weightings take the Gram matrix G G^T and return w.  Each comparison states the convention
by which the two libraries differ, if any, next to the test:

=============  ===============  ==========================================================
mtlkit         TorchJD          convention
=============  ===============  ==========================================================
EW             Mean             none: w = 1/T
RLW(normal)    Random           none: softmax of T standard normals (same seed, same draws)
UPGrad         UPGrad           regulariser scale: TorchJD projects with G G^T / tr + r I
                                (r = 1e-4); mtlkit adds norm_eps tr/T I, so norm_eps = T r
DualProj       DualProj         the same regulariser convention as UPGrad
ConFIG         ConFIG           none (pseudo-inverse rank decided at G's precision)
PCGrad         PCGrad           task orders: compared for the same orders; TorchJD skips
                                j = i, mtlkit's order contains i (the authors' code): the
                                self-projection never fires for T = 2 and is removed here
GradDrop       GradDrop         none for the same uniform draws U
GradVac        GradVac          TorchJD adds eps = 1e-8 to two denominators; order of the
                                other tasks drawn differently: compared at T = 2
IMTL(grad)     IMTLG            none where G has full rank (TorchJD: M^+ ||g||, normalised;
                                mtlkit: the Eq. 9 solve); rank-deficient G: not compared
Aligned-MTL    AlignedMTL       none (both: rank tolerance T eps lambda_max)
CAGrad         CAGrad           mtlkit rescale=0 (TorchJD does not rescale); where g_w = 0
                                (0 in the convex hull) TorchJD returns 0, mtlkit the
                                projection onto the non-conflicting cone: not compared;
                                TorchJD's Clarabel call has default tolerances (w to
                                ~1e-4; mtlkit's dual is exact): compared to 1e-3
MGDA           MGDA             TorchJD stops Frank-Wolfe at a step below epsilon: compared
                                with a tight epsilon, up to Frank-Wolfe's accuracy, and
                                ||d_mtlkit|| <= ||d_torchjd|| (mtlkit solves exactly)
Nash-MTL       NashMTL          scale: TorchJD solves on G G^T / ||G G^T||_F (alpha scaled
                                by ||.||_F^{-1/2}) by 20 convex approximations and clips
                                ||d|| <= max_norm (disabled here): same direction up to
                                a positive factor, to the accuracy of its iterations (which
                                stop short on badly scaled G: there checked by definition)
FairGrad       FairGrad         none: both solve G G^T w = w^(-1/alpha) (TorchJD by scipy's
                                least squares from 1/T, mtlkit by Newton on the convex
                                problem); compared to 1e-5; on badly scaled G least squares
                                stops short: there checked by the definition
ExcessMTL      ExcessMTL        first call: mtlkit (the authors' code) records E^0 and
                                keeps 1/T, TorchJD (n_warmup_steps=0) already updates: the
                                same with n_warmup_steps=1; TorchJD adds 1e-7 to E^0, which
                                matters for tiny gradients: G scaled to min row norm 1e3;
                                badly scaled: each task keeps its scale over the calls
                                (ratios E/E^0 of 1e5 saturate the weights, and TorchJD's
                                then underflow to 0 for good: log 0 = -inf)
MoDo           MoDoWeighting    none, given the single-batch G G^T (TorchJD's is given
                                G_1 G_2^T of two batches; mtlkit has one batch per call)
SDMGrad        SDMGradWeighting inner lr: mtlkit 5 (LibMTL), TorchJD 10: set equal; one
                                batch, as MoDo
=============  ===============  ==========================================================
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torchjd import aggregation as A  # a dev dependency: pip install -e '.[dev]'

from mtlkit import weighting as W
from mtlkit.weighting.cagrad import cagrad_weights_exact
from mtlkit.weighting.graddrop import graddrop_direction
from mtlkit.weighting.pcgrad import pcgrad_coefficients

KINDS = ("random", "near-parallel", "opposite", "rank-deficient", "badly-scaled")
SEEDS = range(12)
F64 = torch.float64


def matrix(kind: str, seed: int, t: int = 3, p: int = 8) -> torch.Tensor:
    """A T x P gradient matrix of the given kind (float64)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(t, p))
    if kind == "near-parallel":
        g = g[:1] * rng.uniform(0.5, 2.0, size=(t, 1)) + 1e-3 * g
    elif kind == "opposite":
        g[1] = -rng.uniform(0.2, 5.0) * g[0]
    elif kind == "rank-deficient":
        g[-1] = rng.normal(size=t - 1) @ g[:-1]
    elif kind == "badly-scaled":
        g = g * 10.0 ** rng.uniform(-3, 2, size=(t, 1))
    return torch.tensor(g, dtype=F64)


def ours(name: str, g: torch.Tensor, **hp) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return W.get(name, **hp).combine(torch.ones(g.shape[0], dtype=F64), g)[0]


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-6,
          g: torch.Tensor | None = None) -> bool:
    """Equal up to rtol relative to the larger norm, or to the largest gradient's norm when
    ``g`` is given (an update that is 0 up to rounding matches another)."""
    scale = max(float(a.norm()), float(b.norm()),
                0.0 if g is None else float(g.norm(dim=1).max()), 1e-300)
    return float((a - b).norm()) <= rtol * scale


def cases(kinds=KINDS, ts=(2, 3, 5)):
    return [pytest.param(k, s, t, id=f"{k}-T{t}-{s}") for k in kinds for t in ts for s in SEEDS]


@pytest.mark.parametrize("kind,seed,t", cases())
def test_ew_is_mean(kind, seed, t):
    g = matrix(kind, seed, t)
    assert close(ours("EW", g), A.Mean()(g), 1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_rlw_normal_is_random(seed):
    g = matrix("random", seed, 4)
    s = W.get("RLW", dist="normal", seed=seed)
    torch.manual_seed(seed)
    for _ in range(3):  # the same stream, call after call
        d, _ = s.combine(torch.ones(4, dtype=F64), g)
        assert close(d, A.Random()(g), 1e-12)


@pytest.mark.parametrize("kind,seed,t", cases())
@pytest.mark.parametrize("name", ["UPGrad", "DualProj"])
def test_dual_cone_projections(name, kind, seed, t):
    """Regulariser convention: norm_eps = T * TorchJD's reg_eps (1e-4)."""
    g = matrix(kind, seed, t)
    ref = getattr(A, name)()(g)
    assert close(ours(name, g, norm_eps=t * 1e-4), ref, 1e-5, g)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_config(kind, seed, t):
    g = matrix(kind, seed, t)
    assert close(ours("ConFIG", g), A.ConFIG()(g), 1e-6, g)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_pcgrad_same_orders(kind, seed, t):
    """TorchJD draws one global torch.randperm(T) per task and skips j = i; the same orders,
    without i, go to mtlkit's coefficient function.  T = 2: the strategy itself."""
    g = matrix(kind, seed, t)
    m = g @ g.T
    torch.manual_seed(seed)
    ref = A.PCGrad()(g)
    torch.manual_seed(seed)
    perms = [[j for j in torch.randperm(t).tolist() if j != i] for i in range(t)]
    assert close(pcgrad_coefficients(m, perms).sum(0) @ g, ref, 1e-9, g)
    if t == 2:
        assert close(ours("PCGrad", g), ref, 1e-9, g)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_graddrop_same_draws(kind, seed, t):
    g = matrix(kind, seed, t)
    torch.manual_seed(seed)
    ref = A.GradDrop()(g)
    torch.manual_seed(seed)
    u = torch.rand(g.shape[1], dtype=F64)
    assert close(graddrop_direction(g, u), ref, 1e-12)


@pytest.mark.parametrize("kind,seed", [(k, s) for k in KINDS for s in SEEDS])
def test_gradvac_two_tasks_three_steps(kind, seed):
    """The goals phi are state: three calls in a row, TorchJD's beta set to mtlkit's.
    TorchJD's eps = 1e-8 in ||g_i|| ||g_j|| + eps moves the cosine of (anti)parallel
    gradients off +-1, which sqrt(1 - rho^2) amplifies: G is scaled so that its smallest
    row has norm 1e4 (GradVac's update is linear in G's scale), where eps is negligible."""
    s, ref = W.get("GradVac", beta=0.5), A.GradVac(beta=0.5)
    for step in range(3):
        g = matrix(kind, 100 * seed + step, 2)
        g = g * (1e4 / g.norm(dim=1).min())
        d, _ = s.combine(torch.ones(2, dtype=F64), g)
        assert close(d, ref(g), 1e-6, g), step


@pytest.mark.parametrize("kind,seed,t", cases(("random", "near-parallel", "badly-scaled")))
def test_imtl_g_full_rank(kind, seed, t):
    """Full rank only: "opposite" and "rank-deficient" G have rank < T, where Eq. 9 has no
    unique solution (TorchJD's M^+ and mtlkit's ridge pick different ones)."""
    g = matrix(kind, seed, t)
    assert close(ours("IMTL", g, method="grad"), A.IMTLG()(g), 1e-6, g)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_aligned_mtl(kind, seed, t):
    g = matrix(kind, seed, t)
    assert close(ours("Aligned-MTL", g), A.AlignedMTL()(g), 1e-6, g)


@pytest.mark.parametrize("kind,seed,t", cases())
@pytest.mark.parametrize("c", [0.4, 0.8])
def test_cagrad_without_rescale(kind, seed, t, c):
    """Not compared where ||g_w*|| < 1e-4 ||G||_F: TorchJD then returns 0 (its norm_eps on
    the trace-normalised Gram matrix), mtlkit the CAGrad formula or, at g_w = 0 (0 in the
    convex hull), the projection onto the non-conflicting cone."""
    g = matrix(kind, seed, t)
    m = (g @ g.T).numpy()
    w = cagrad_weights_exact(m, c)
    if np.sqrt(max(w @ m @ w, 0.0)) < 1e-4 * np.sqrt(np.trace(m)):
        pytest.skip("g_w ~ 0 at TorchJD's threshold, where the two libraries differ on purpose")
    assert close(ours("CAGrad", g, c=c, rescale=0), A.CAGrad(c=c)(g), 1e-3, g)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_mgda_min_norm(kind, seed, t):
    g = matrix(kind, seed, t)
    d = ours("MGDA", g)
    ref = A.MGDA(epsilon=1e-7, max_iters=5000)(g)
    assert float(d.norm()) <= float(ref.norm()) * (1 + 1e-9) + 1e-12
    assert float((d - ref).norm()) <= 1e-2 * max(float(g.norm(dim=1).max()), 1e-12)


@pytest.mark.parametrize("kind,seed,t", cases(("random", "near-parallel"), ts=(2, 3)))
def test_nash_mtl_same_direction(kind, seed, t):
    g = matrix(kind, seed, t)
    d = ours("Nash-MTL", g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = A.NashMTL(n_tasks=t, max_norm=0.0, optim_niter=100)(g)
    cos = float(d @ ref) / float(d.norm() * ref.norm())
    assert cos > 1 - 1e-4, cos


@pytest.mark.parametrize("seed,t", [(s, t) for s in SEEDS for t in (2, 3)])
def test_nash_mtl_badly_scaled_solves_the_bargaining_condition(seed, t):
    """Gradient norms over five decades: TorchJD's 20-100 sequential convex approximations
    stop short of the bargaining solution (alpha_t (M alpha)_t unequal across tasks), so the
    direction is checked against the definition, alpha_t (G G^T alpha)_t = 1 for every t
    (Navon et al. 2022, Thm. 5.1), instead of against TorchJD."""
    g = matrix("badly-scaled", seed, t)
    _, alpha = W.get("Nash-MTL").combine(torch.ones(t, dtype=F64), g)
    a, m = alpha.numpy(), (g @ g.T).numpy()
    assert np.all(a > 0) and np.allclose(a * (m @ a), 1.0, atol=1e-4)


@pytest.mark.parametrize("kind,seed,t", cases(("random", "near-parallel")))
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fairgrad(kind, seed, t, alpha):
    g = matrix(kind, seed, t)
    assert close(ours("FairGrad", g, alpha=alpha), A.FairGrad(alpha=alpha)(g), 1e-5, g)


@pytest.mark.parametrize("seed,t", [(s, t) for s in SEEDS for t in (2, 3, 5)])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fairgrad_badly_scaled_solves_its_condition(seed, t, alpha):
    """Gradient norms over five decades, where least squares from 1/T stops short: checked
    against Eq. 4, w_t^(1/alpha) (G G^T w)_t = 1 for every t."""
    g = matrix("badly-scaled", seed, t)
    _, w = W.get("FairGrad", alpha=alpha).combine(torch.ones(t, dtype=F64), g)
    w, m = w.numpy(), (g @ g.T).numpy()
    assert np.all(w > 0) and np.allclose(w ** (1 / alpha) * (m @ w), 1.0, atol=1e-8)


@pytest.mark.parametrize("kind,seed,t", cases())
def test_excess_mtl_four_calls(kind, seed, t):
    """The first call only records E^0 in both (TorchJD: n_warmup_steps=1)."""
    s, ref = W.get("ExcessMTL", robust_step_size=0.5), A.ExcessMTL(0.5, n_warmup_steps=1)
    scales = torch.tensor(10.0 ** np.random.default_rng(seed).uniform(-3, 2, (t, 1)))
    for step in range(4):
        g = matrix("random" if kind == "badly-scaled" else kind, 100 * seed + step, t)
        if kind == "badly-scaled":  # each task keeps its scale from call to call
            g = g * scales
        g = g * (1e3 / g.norm(dim=1).min())
        d, _ = s.combine(torch.ones(t, dtype=F64), g)
        assert close(d, ref(g), 1e-6, g), step


@pytest.mark.parametrize("kind,seed,t", cases())
@pytest.mark.parametrize("name", ["MoDo", "SDMGrad"])
def test_modo_and_sdmgrad_three_calls(name, kind, seed, t):
    """Stateful (lambda, w carried over); TorchJD's weighting gets the Gram matrix."""
    hp, ref = ({"gamma": 0.05}, A.MoDoWeighting(gamma=0.05, rho=0.1)) if name == "MoDo" else \
        ({}, A.SDMGradWeighting(lr=5.0))
    s = W.get(name, **hp)
    for step in range(3):
        g = matrix(kind, 100 * seed + step, t)
        _, w = s.combine(torch.ones(t, dtype=F64), g)
        assert torch.allclose(w, ref(g @ g.T), atol=1e-10), step
