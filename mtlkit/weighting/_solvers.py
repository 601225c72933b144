"""The minimum-norm point in the convex hull of T vectors (MGDA's sub-problem): the
solvers that MGDA, CAGrad and MetaWeighting share.  A private module (not a strategy);
its public name is ``mtlkit.weighting.min_norm``.

Given per-task gradients g_1..g_T (rows of G) and their Gram matrix M = G G^T,

    lambda* = argmin_{lambda in simplex}  lambda^T M lambda = || G^T lambda ||^2      (1)

(``metaweighting.txt`` §4.3.2, Eq. 12; Sener & Koltun 2018, Eq. 5).  Désidéri's
theorem (``metaweighting.txt`` Theorem 1): if d = G^T lambda* != 0 then
g_t . d >= ||d||^2 > 0 for every t, so -d is a descent direction common to all tasks.

Solvers (all work on M only, on any device and dtype, without host syncs):

* :func:`min_norm_2`  the exact two-vector case, a clipped closed form.
* :func:`min_norm_frank_wolfe`  Frank-Wolfe with the exact line search
  (``metaweighting.txt`` Algorithm 2; Sener & Koltun 2018, Algorithm 2).
* :func:`min_norm_exact`  exact for small T by enumerating the supports
  (every face of the simplex), in one batched solve.
* :func:`min_norm_active_set`  exact for any T: Wolfe's (1976) minimum-norm
  point algorithm on M, a finite active-set method run on the host in float64.

Derived in ``notebooks/20_mgda_and_the_common_descent_direction.ipynb``.

Trade-off of the Frank-Wolfe stopping rule: a data-dependent ``break`` needs the
duality gap on the host, i.e. one GPU->CPU sync per iteration.  On CPU tensors we
break as soon as the gap is below ``tol``; on an accelerator we run exactly
``iters`` iterations and *freeze* lambda (a masked update) once the gap is
below ``tol``: no sync, the result is the same, but the cost is always ``iters``
tiny kernels.  :func:`min_norm_exact` avoids iterations altogether for T <= 10;
:func:`min_norm_active_set` needs M on the host (one T x T transfer, one sync)
but ends, exactly, after a few active-set changes.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from mtlkit.weighting._gram import gram64
from mtlkit.weighting._precision import combine_rows


def min_norm_2(g1g1: Tensor, g1g2: Tensor, g2g2: Tensor) -> tuple[Tensor, Tensor]:
    """Exact min over gamma in [0, 1] of || gamma g1 + (1 - gamma) g2 ||^2.

    Setting the derivative to zero: gamma = (g2.g2 - g1.g2) / ||g1 - g2||^2,
    clipped to [0, 1] (so gamma = 1 when g1.g2 >= g1.g1, gamma = 0 when
    g1.g2 >= g2.g2).  When g1 = g2 every gamma is optimal and we return 1/2.
    Returns ``(gamma, cost)``; inputs may be batched tensors of equal shape.
    """
    g1g1, g1g2, g2g2 = (torch.as_tensor(x) for x in (g1g1, g1g2, g2g2))
    den = g1g1 + g2g2 - 2 * g1g2
    tiny = torch.finfo(den.dtype).eps * (g1g1.abs() + g2g2.abs()) + torch.finfo(den.dtype).tiny
    ok = den > tiny
    gamma = torch.where(ok, (g2g2 - g1g2) / torch.where(ok, den, torch.ones_like(den)),
                        torch.full_like(den, 0.5)).clamp(0.0, 1.0)
    cost = gamma**2 * g1g1 + 2 * gamma * (1 - gamma) * g1g2 + (1 - gamma) ** 2 * g2g2
    return gamma, cost


def _best_pair(m: Tensor) -> Tensor:
    """The best two-task solution over all pairs (Sener & Koltun's initialisation)."""
    t = m.shape[0]
    i, j = torch.triu_indices(t, t, offset=1, device=m.device)
    diag = torch.diagonal(m)
    gamma, cost = min_norm_2(diag[i], m[i, j], diag[j])
    k = torch.argmin(cost)
    lam = torch.zeros(t, dtype=m.dtype, device=m.device)
    lam = lam.index_put((i[k],), gamma[k]).index_put((j[k],), 1 - gamma[k], accumulate=True)
    return lam


def min_norm_frank_wolfe(gram: Tensor, iters: int = 250, tol: float = 1e-8,
                         init: str = "pair", early_exit: bool | None = None) -> Tensor:
    """Frank-Wolfe for (1) with the exact line search.

    Each iteration (``metaweighting.txt`` Algorithm 2):

        j     = argmin_k (M lambda)_k                 (the vertex v = e_j minimising v^T M lambda)
        gamma = argmin_{[0,1]} ||(1-gamma) G^T lambda + gamma g_j||^2   (:func:`min_norm_2`)
        lambda <- (1 - gamma) lambda + gamma e_j

    The Frank-Wolfe gap lambda^T M lambda - (M lambda)_j >= 0 bounds the
    sub-optimality; iteration stops (or freezes, see module docstring) once it
    is <= ``tol`` * max(1, max_k M_kk).

    Parameters
    ----------
    gram: the T x T Gram matrix M = G G^T.
    iters: maximum number of iterations.
    tol: relative tolerance on the duality gap.
    init: ``"pair"`` (best two-task solution, exact for T = 2, as in Sener &
        Koltun's code) or ``"uniform"`` (lambda = 1/T, as in Algorithm 2).
    early_exit: break once the gap is small (needs the gap on the host); default:
        True on CPU, False elsewhere (freeze lambda instead: no sync).
    """
    m = _check_gram(gram)
    t = m.shape[0]
    if t == 1:
        return torch.ones(1, dtype=m.dtype, device=m.device)
    if init == "pair":
        lam = _best_pair(m)
    elif init == "uniform":
        lam = torch.full((t,), 1.0 / t, dtype=m.dtype, device=m.device)
    else:
        raise ValueError(f"init must be 'pair' or 'uniform', got {init!r}")
    if t == 2:
        return lam
    scale = torch.diagonal(m).abs().max().clamp_min(1.0)
    on_cpu = m.device.type == "cpu" if early_exit is None else early_exit
    eye = torch.eye(t, dtype=m.dtype, device=m.device)
    for _ in range(iters):
        mlam = m @ lam
        j = torch.argmin(mlam)
        a = lam @ mlam
        b = mlam[j]
        c = m[j, j]
        gap = a - b
        if on_cpu and gap <= tol * scale:
            break
        gamma, _ = min_norm_2(c, b, a)  # gamma is the weight of the vertex e_j
        if not on_cpu:
            gamma = torch.where(gap > tol * scale, gamma, torch.zeros_like(gamma))
        lam = (1 - gamma) * lam + gamma * eye[j]
    return lam


@lru_cache(maxsize=16)
def simplex_faces(t: int) -> Tensor:
    """All 2^T - 1 non-empty subsets of range(T) as a boolean (S, T) mask."""
    rows = [[k in s for k in range(t)] for r in range(1, t + 1)
            for s in itertools.combinations(range(t), r)]
    return torch.tensor(rows, dtype=torch.bool)


def min_norm_exact(gram: Tensor, ridge: float = 1e-12) -> Tensor:
    """Exact solution of (1) for small T (<= 10) by enumerating supports.

    The optimum lambda* lies in the relative interior of some face S of the
    simplex, where it minimises lambda^T M lambda on the affine hull
    {sum_S lambda = 1}: lambda_S = M_SS^{-1} 1 / (1^T M_SS^{-1} 1).  We solve
    this for every S at once (with a tiny ridge so that singular M_SS still
    give a point on the face), project each candidate onto the simplex
    (clip, renormalise), and keep the feasible candidate of least objective.
    Every candidate is feasible, so inaccuracy can only cost optimality,
    never feasibility; one batched solve, no host sync.
    """
    m = _check_gram(gram)
    t = m.shape[0]
    if t > 10:
        raise ValueError(f"min_norm_exact enumerates 2^T supports; T={t} is too many, "
                         "use min_norm_frank_wolfe")
    s = simplex_faces(t).to(m.device)
    sf = s.to(m.dtype)
    mask2 = sf[:, :, None] * sf[:, None, :]
    scale = torch.diagonal(m).abs().max().clamp_min(torch.finfo(m.dtype).tiny)
    eye = torch.eye(t, dtype=m.dtype, device=m.device)
    # restrict M to S (identity outside S so the system stays invertible)
    a = m * mask2 + eye * (1 - sf)[:, None, :] + ridge * scale * eye
    x, _ = torch.linalg.solve_ex(a, sf)
    x = torch.nan_to_num(x * sf, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    tot = x.sum(-1, keepdim=True)
    x = torch.where(tot > 0, x / tot.clamp_min(torch.finfo(m.dtype).tiny), sf / sf.sum(-1, True))
    obj = torch.einsum("si,ij,sj->s", x, m, x)
    return x[torch.argmin(obj)]


def min_norm_active_set(gram: Tensor, tol: float = 1e-12, max_iter: int | None = None) -> Tensor:
    """Exact solution of (1) for any T by Wolfe's minimum-norm-point algorithm.

    Work on the points p_k with Gram matrix M (scaled so that max_k M_kk = 1),
    x = sum_k lambda_k p_k.  Keep a *corral* S (the support of lambda):

    * major step: j = argmin_k (M lambda)_k, the vertex minimising x . p_k.  If
      the Frank-Wolfe gap lambda^T M lambda - (M lambda)_j <= ``tol``, lambda
      satisfies the KKT conditions of (1) and is optimal; else add j to S.
    * minor step: the affine minimiser of S, alpha = argmin_{1^T a = 1} a^T M_SS a,
      from the KKT system [M_SS 1; 1^T 0] [a; mu] = [0; 1].  If alpha > 0 it
      becomes lambda_S; otherwise move from lambda_S towards alpha until the
      first coordinate hits 0, drop it from S, and repeat.

    Each major step strictly lowers ||x||, and there are finitely many corrals,
    so it ends in a finite number of steps (Wolfe 1976), in practice a few per
    task; ``max_iter`` (default 50 T) only guards against round-off cycling.
    Runs in NumPy float64; returns lambda on M's device and dtype.
    """
    m = _check_gram(gram)
    t = m.shape[0]
    b = m.detach().to("cpu", torch.float64).numpy()
    big = np.finfo(np.float64).max / (4 * t)  # non-finite entries (diverged gradients) -> huge
    b = np.nan_to_num(b, nan=0.0, posinf=big, neginf=-big)
    b = b / max(float(np.diagonal(b).max()), np.finfo(np.float64).tiny)
    lam = np.zeros(t)
    support = [int(np.argmin(np.diagonal(b)))]
    lam[support[0]] = 1.0
    for _ in range(max_iter or 50 * t):
        ml = b @ lam
        j = int(np.argmin(ml))
        if lam @ ml - ml[j] <= tol or j in support:
            break
        support.append(j)
        lam = _minor_cycle(b, lam, support)
    return torch.as_tensor(lam, dtype=m.dtype, device=m.device)


def _minor_cycle(b: np.ndarray, lam: np.ndarray, support: list) -> np.ndarray:
    """Wolfe's minor cycle: move lambda to the affine minimiser of the corral,
    dropping vertices (from ``support``, in place) that the move sends to 0."""
    eps = 1e-14
    while True:
        s = np.asarray(support)
        k = len(s)
        kkt = np.ones((k + 1, k + 1))
        kkt[:k, :k], kkt[k, k] = b[np.ix_(s, s)], 0.0
        rhs = np.zeros(k + 1)
        rhs[k] = 1.0
        alpha = _solve_kkt(kkt, rhs)[:k]
        if alpha.min() > eps:
            lam = np.zeros_like(lam)
            lam[s] = alpha
            return lam
        cur = lam[s]
        neg = alpha <= eps
        theta = np.min(cur[neg] / np.maximum(cur[neg] - alpha[neg], eps))
        new = np.clip(cur + min(theta, 1.0) * (alpha - cur), 0.0, None)
        new[np.argmin(np.where(neg, new, np.inf))] = 0.0  # at least one leaves
        lam = np.zeros_like(lam)
        lam[s] = new / new.sum()
        support[:] = [i for i, v in zip(s.tolist(), new) if v > 0]


def _solve_kkt(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """a x = rhs by LU, or by least squares when a is (nearly) singular."""
    try:
        x = np.linalg.solve(a, rhs)
        if np.isfinite(x).all() and np.abs(a @ x - rhs).max() < 1e-10:
            return x
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(a, rhs, rcond=None)[0]


def min_norm_element(grads: Tensor, method: str = "auto", iters: int = 250,
                     tol: float = 1e-8) -> tuple[Tensor, Tensor]:
    """lambda* of (1) from the T x P vectors themselves, and d = G^T lambda*.

    ``method``: one of :data:`METHODS` (see :func:`solve_min_norm`).
    lambda is float64; d has G's dtype.
    """
    m = gram64(grads)
    lam = solve_min_norm(m, method, iters, tol)
    return lam, combine_rows(lam, grads)


METHODS = ("auto", "fw", "exact", "active")


def solve_min_norm(m: Tensor, method: str = "auto", iters: int = 250,
                   tol: float = 1e-8) -> Tensor:
    """Solve (1) by name: ``"fw"`` (Frank-Wolfe, Algorithm 2; ``iters``, ``tol``),
    ``"exact"`` (support enumeration, T <= 10), ``"active"`` (Wolfe's active set),
    or ``"auto"``: the fastest exact solver, i.e. ``"active"`` on the CPU and, on an
    accelerator, the sync-free ``"exact"`` for T <= 8 and ``"active"`` above."""
    if method == "auto":
        method = "exact" if m.device.type != "cpu" and m.shape[0] <= 8 else "active"
    if method == "fw":
        return min_norm_frank_wolfe(m, iters=iters, tol=tol)
    if method == "exact":
        return min_norm_exact(m)
    if method == "active":
        return min_norm_active_set(m)
    raise ValueError(f"unknown min-norm method {method!r}; choose one of {METHODS}")


def _check_gram(gram: Tensor) -> Tensor:
    if not isinstance(gram, Tensor):
        gram = torch.as_tensor(gram, dtype=torch.float64)
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"expected a non-empty square T x T Gram matrix, got {tuple(gram.shape)}")
    if not gram.is_floating_point():
        gram = gram.double()
    return (gram + gram.T) / 2
