"""The bound formulas of ``metaweighting.txt`` §5 / App. A and ``rlw.md`` §4 / App. B.

Every function returns the right-hand side of one inequality; the notebooks that
check them are ``notebooks/40_generalization_bounds.ipynb`` and
``41_query_loss_bound_and_hypergradients.ipynb`` (MetaWeighting) and
``42_rlw_convergence.ipynb`` / ``43_rlw_noise_and_flat_minima.ipynb`` (RLW).
"""

from __future__ import annotations

from math import exp, log, sqrt


def _check_prob(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _check_pos(**kw: float) -> None:
    for k, v in kw.items():
        if not v > 0:
            raise ValueError(f"{k} must be positive, got {v}")


# ------------------------------------------------------------ concentration
def hoeffding_radius(m: int, delta: float, two_sided: bool = True, width: float = 1.0) -> float:
    """Hoeffding (Eq. 19): P[|mean - mu| > eps] <= 2 exp(-2 m eps^2 / width^2), so
    eps = width sqrt(log(2/delta) / (2m)) (two-sided) or log(1/delta) (one-sided)."""
    _check_prob(delta)
    _check_pos(m=m, width=width)
    return width * sqrt(log((2 if two_sided else 1) / delta) / (2 * m))


def hoeffding_tail(m: int, eps: float, two_sided: bool = True) -> float:
    """The Hoeffding tail bound 2 exp(-2 m eps^2) (or exp(-2 m eps^2)), [0,1] variables."""
    return min(1.0, (2 if two_sided else 1) * exp(-2 * m * eps * eps))


def union_radius(m: int, delta: float, k: int, two_sided: bool = False) -> float:
    """Hoeffding for k hypotheses at once (union bound): delta/k each."""
    _check_pos(k=k)
    return hoeffding_radius(m, delta / k, two_sided)


def pooled_radius(T: int, m: int, delta: float, two_sided: bool = False) -> float:
    """Hoeffding on the T*m pooled query losses: the task-average of T task means of m
    [0,1] losses is a mean of T*m independent [0,1] variables (each task's weighted
    1/(T m)), so eps = sqrt(log(1/delta) / (2 T m)) one-sided."""
    return hoeffding_radius(T * m, delta, two_sided)


# ------------------------------------------------------ MetaWeighting §5
def theorem3_bound(m: int, delta: float) -> float:
    """Eq. 16 (Theorem 3): sqrt(log(2/delta) / (2m))."""
    return hoeffding_radius(m, delta, two_sided=True)


def theorem2_confidence(T: int, n: int, delta: float, c: float = 1.0,
                        factor: float = 4.0) -> float:
    """The confidence term of Eq. 14 / 29: factor * c * sqrt(2 log(4/delta) / (T n))."""
    _check_prob(delta)
    return factor * c * sqrt(2 * log(4 / delta) / (T * n))


def theorem2_bound(rademacher: float, T: int, n: int, delta: float, c: float = 1.0) -> float:
    """Eq. 14 (Theorem 2): 2 R(l o H o D) + 4 sqrt(2 log(4/delta) / (T n))."""
    return 2 * rademacher + theorem2_confidence(T, n, delta, c)


def theorem2_from_proof_steps(rademacher: float, T: int, n: int, delta: float,
                              c: float = 1.0) -> float:
    """What Eqs. 26 and 28 give when added as written: 2R + c s + 2 (2 c s) = 2R + 5 c s,
    s = sqrt(2 log(4/delta)/(T n)), i.e. a 5 where Eq. 29 writes 4."""
    s = theorem2_confidence(T, n, delta, c, factor=1.0)
    return 2 * rademacher + s + 2 * (2 * s)


def standard_rademacher_bound(rademacher: float, N: int, delta: float) -> float:
    """The textbook data-dependent bound for [0,1] losses and N independent samples
    (e.g. Mohri et al. 2018, Thm 3.3, with McDiarmid's one-sided tails):
    sup_h (L - L_hat) <= 2 R_hat + 3 sqrt(log(2/delta) / (2N))."""
    _check_prob(delta)
    return 2 * rademacher + 3 * sqrt(log(2 / delta) / (2 * N))


# ------------------------------------------------------------- RLW §4
def rlw_thm1_bound(k, eta: float, c: float, kappa: float, e0: float):
    """Eq. 4: E||theta_k - theta*||^2 <= (1 - 2 eta c)^k e0 + eta kappa / (2c)."""
    _check_pos(eta=eta, c=c, kappa=kappa)
    if 2 * eta * c > 1:
        raise ValueError(f"Theorem 1 needs eta <= 1/(2c) = {1 / (2 * c):.4g}, got eta={eta}")
    return (1 - 2 * eta * c) ** k * e0 + eta * kappa / (2 * c)


def rlw_thm1_recursion(k: int, eta: float, c: float, kappa: float, e0: float) -> float:
    """Iterate Eq. 6 with equality, u_{j+1} = (1 - 2 eta c) u_j + eta^2 kappa, u_0 = e0:
    the worst sequence the proof's inequalities allow."""
    u = e0
    for _ in range(int(k)):
        u = (1 - 2 * eta * c) * u + eta * eta * kappa
    return u


def rlw_thm1_eta(eps: float, c: float, kappa: float) -> float:
    """Theorem 1's step size eta = eps c / kappa."""
    return eps * c / kappa


def rlw_thm1_iterations(eps: float, e0: float, c: float, kappa: float) -> float:
    """Theorem 1's iteration count as written: k = kappa/(2 eps c^2) log(e0/eps)."""
    _check_pos(eps=eps, e0=e0, c=c, kappa=kappa)
    return kappa / (2 * eps * c * c) * log(e0 / eps)


def rlw_thm1_iterations_corrected(eps: float, e0: float, c: float, kappa: float) -> float:
    """The count that Eq. 4 does support with eta = eps c/kappa: its noise ball is
    eta kappa/(2c) = eps/2, so (1 - 2 eps c^2/kappa)^k e0 <= eps/2 needs
    k >= kappa/(2 eps c^2) log(2 e0/eps)."""
    _check_pos(eps=eps, e0=e0, c=c, kappa=kappa)
    return kappa / (2 * eps * c * c) * log(2 * e0 / eps)


def rlw_thm3_Q(alpha: float, c: float, kappa: float, e0: float) -> float:
    """Theorem 3 (App. B.4): Q = max{2 alpha^2 kappa / (2 alpha c - 1), ||theta_0 - theta*||^2}."""
    if not 2 * alpha * c > 1:
        raise ValueError(f"Theorem 3 needs alpha > 1/(2c) = {1 / (2 * c):.4g}, got {alpha}")
    return max(2 * alpha * alpha * kappa / (2 * alpha * c - 1), e0)


def rlw_thm3_loss_bound(k, alpha: float, c: float, kappa: float, e0: float, L: float):
    """Theorem 3's 'generalization bound' as stated:
    max{alpha^2 L kappa (2 alpha c - 1)^-1, L ||theta_0 - theta*||^2} / k."""
    return max(alpha * alpha * L * kappa / (2 * alpha * c - 1), L * e0) / k


def rlw_thm2_constants(eta: float, c: float, M: float, r: float,
                       corrected: bool = False) -> tuple[float, float]:
    """Theorem 2's (rho, beta): rho = 2 eta c - eta^2 M^2 and beta = eta^2 r^2 (1 + eta M)^2
    as written, or eta^2 r (1 + eta M)^2 (``corrected``: the proof's ||xi||^2 <= r gives
    E||eta xi||^2 <= eta^2 r, not eta^2 r^2)."""
    rho = 2 * eta * c - eta * eta * M * M
    if rho <= 0:
        raise ValueError(f"Theorem 2 needs eta < 2c/M^2 so that rho > 0; got rho={rho:.3g}")
    return rho, eta * eta * (r if corrected else r * r) * (1 + eta * M) ** 2


def rlw_thm2_iterations(eta: float, c: float, M: float, r: float, e0: float,
                        corrected: bool = False) -> float:
    """Theorem 2's K = (1/rho) log(rho e0 / beta)."""
    rho, beta = rlw_thm2_constants(eta, c, M, r, corrected)
    return log(rho * e0 / beta) / rho


def rlw_thm2_radius(eta: float, c: float, M: float, r: float, delta: float,
                    corrected: bool = False) -> float:
    """Theorem 2: ||phi_K - theta*||^2 <= 2 beta / (rho delta) with probability 1 - delta."""
    _check_prob(delta)
    rho, beta = rlw_thm2_constants(eta, c, M, r, corrected)
    return 2 * beta / (rho * delta)
