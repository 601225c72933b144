"""MGDA: the multiple-gradient descent algorithm as MTL (Sener & Koltun, NeurIPS 2018)."""

from __future__ import annotations

from torch import Tensor

from mtlkit.weighting._solvers import METHODS, solve_min_norm
from mtlkit.weighting.base import PARAM, REP, GramWeighting, register

NORMALIZATIONS = ("none", "l2", "loss", "loss+")
SOLVERS = METHODS


def gradient_normalizers(losses: Tensor, sq_norms: Tensor, kind: str) -> Tensor:
    """n_t by which g_t is divided before the min-norm solve (Sener & Koltun's code).

    'none': 1;  'l2': ||g_t||;  'loss': L_t;  'loss+': L_t ||g_t||.
    We use |L_t| (losses may be negative, e.g. on the toy problem); a zero
    normaliser is clamped to 1e-12 by the caller.
    """
    norms = sq_norms.clamp_min(0).sqrt()
    if kind == "none":
        return norms.new_ones(norms.shape)
    if kind == "l2":
        return norms
    if kind == "loss":
        return losses.to(norms.dtype).abs()
    if kind == "loss+":
        return losses.to(norms.dtype).abs() * norms
    raise ValueError(f"unknown MGDA normalization {kind!r}; choose one of {NORMALIZATIONS}")


@register
class MGDA(GramWeighting):
    """Min-norm point of the convex hull of the (normalised) task gradients
    (Sener & Koltun 2018, Eq. 3-5 and Algorithm 2; ``metaweighting.txt`` §4.3.2,
    Eqs. 11-12 and Theorem 1):

        lambda* = argmin_{lambda in simplex} || sum_t lambda_t g_t / n_t ||^2,
        d = sum_t lambda*_t g_t.

    With ``normalization="none"`` d is the min-norm element itself, a common
    descent direction (g_t . d >= ||d||^2 for all t) unless it is 0.  As in the
    authors' code the weights are solved on g_t / n_t and applied to the raw
    gradients (their training loss is sum_t lambda_t L_t), so the returned
    weights are exactly lambda* and d = G^T lambda*.

    Mode ``"rep"`` (gradients w.r.t. the shared representation) is MGDA-UB,
    the paper's upper-bound approximation (Eq. 7, Theorem 1 of the paper).

    Derived in ``notebooks/20_mgda_and_the_common_descent_direction.ipynb``.

    Parameters
    ----------
    normalization:
        'none' (default, as LibMTL), 'l2', 'loss' or 'loss+' (Sener & Koltun's options).
    solver:
        'fw' (Frank-Wolfe with exact line search, the paper's algorithm, exact
        closed form for 2 tasks), 'exact' (support enumeration, T <= 10),
        'active' (Wolfe's active-set method, exact for any T), or 'auto'
        (the fastest exact one for the device; all solve the same problem).
    iters:
        Frank-Wolfe iterations (the authors' code: 250).
    tol:
        Frank-Wolfe relative duality-gap tolerance.
    """

    name = "MGDA"
    modes = (PARAM, REP)

    def __init__(self, normalization: str = "none", solver: str = "auto", iters: int = 250,
                 tol: float = 1e-8) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"MGDA normalization must be one of {NORMALIZATIONS}, "
                             f"got {normalization!r}")
        if solver not in SOLVERS:
            raise ValueError(f"MGDA solver must be one of {SOLVERS}, got {solver!r}")
        if not (isinstance(iters, int) and iters >= 1):
            raise ValueError(f"MGDA iters must be a positive int, got {iters!r}")
        if not tol >= 0:
            raise ValueError(f"MGDA tol must be >= 0, got {tol!r}")
        self.normalization, self.solver, self.iters, self.tol = normalization, solver, iters, tol

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        n = gradient_normalizers(losses.detach(), gram.diagonal(), self.normalization)
        n = n.clamp_min(1e-12)
        return solve_min_norm(gram / (n[:, None] * n[None, :]), self.solver, self.iters,
                              self.tol)
