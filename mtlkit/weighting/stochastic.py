"""Stochastic multi-objective gradient methods: MoCo (Fernando et al., ICLR 2023), MoDo (Chen,
Fernando, Ying, Chen & Kwok, NeurIPS 2023 / JMLR 2024) and SDMGrad (Xiao, Ban & Ji, NeurIPS 2023).

All three replace MGDA's exact min-norm solve by a few projected-gradient steps on the
simplex weights lambda, carried from step to step, so that the bias of a min-norm solve
on *stochastic* gradients is averaged out:

* MoCo tracks each task's gradient with a moving average y_t and takes one projected step
  on lambda^T Y Y^T lambda;
* MoDo takes one projected step on lambda^T G_1 G_2^T lambda with two independent batches
  (double sampling) and moves along a third;
* SDMGrad solves, by a few momentum steps, the min-norm problem pulled towards a preferred
  direction (the mean gradient), with two independent batches.

Batches, made explicit: a strategy sees one batch per call (``combine(losses, G)``), so
MoDo and SDMGrad here use the single-batch estimate G_1 = G_2 = G_3 = G (the papers'
double sampling needs the engine to draw two or three batches per step; with one batch the
update is the same formula with a biased inner product, as in many re-implementations).

Derived in ``notebooks/24_more_gradient_weightings.ipynb``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtlkit.weighting._precision import row_norms
from mtlkit.weighting._solvers import project_simplex
from mtlkit.weighting.base import (
    PARAM,
    Combined,
    GramWeighting,
    Weighting,
    at_work,
    check_flag,
    register,
)


def _positive(name: str, **values: float) -> None:
    for key, v in values.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and v > 0):
            raise ValueError(f"{name} {key} must be a positive number, got {v!r}")


def _non_negative(name: str, **values: float) -> None:
    for key, v in values.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and v >= 0):
            raise ValueError(f"{name} {key} must be a number >= 0, got {v!r}")


def moco_lambda_step(lam: Tensor, yy: Tensor, gamma: float, rho: float) -> Tensor:
    """lambda <- Pi_simplex(lambda - gamma (Y Y^T + rho I) lambda) (Fernando et al. 2023,
    Algorithm 1, the lambda update; ``yy`` = Y Y^T)."""
    return project_simplex(lam - gamma * (yy @ lam + rho * lam))


@register
class MoCo(Weighting):
    """MoCo: multi-objective gradient correction (Fernando et al., ICLR 2023, Algorithm 1).

    At step k (beta_k = beta / k^beta_sigma, gamma_k = gamma / k^gamma_sigma):

        y_t <- y_t - beta_k (y_t - h_t)                       (tracking, Eq. 7; y^0 = 0)
        lambda <- Pi_simplex(lambda - gamma_k (Y Y^T + rho I) lambda)    (Eq. 8; lambda^0 = 1/T)
        d = Y^T lambda

    with h_t = g_t (the paper) or, ``normalize=True``, g_t / ||g_t|| * L_t (the authors'
    shared code, used by LibMTL, which also replaces Pi_simplex by a softmax; here the
    paper's projection is kept).  d carries the tracked gradients of earlier steps, so it
    is not G^T w: the returned weights are the coefficients of the current gradients,
    lambda_t beta_k (times L_t / ||g_t|| when normalising); ``is_reweighting = False``.
    Gradients of the shared parameters only (the tracked y_t of representation gradients
    would mix different batches' representations).

    Parameters
    ----------
    beta, beta_sigma:
        Tracking rate and its decay exponent (defaults 0.5, 0.5, the authors' code).
    gamma, gamma_sigma:
        Step size of lambda and its decay exponent (defaults 0.1, 0.5).
    rho:
        l2 regularisation of the lambda update (default 0).
    normalize:
        Track g_t / ||g_t|| * L_t instead of g_t (see above; default False, the paper).
    """

    name = "MoCo"
    modes = (PARAM,)
    is_reweighting = False

    def __init__(self, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1,
                 gamma_sigma: float = 0.5, rho: float = 0.0, normalize: bool = False) -> None:
        super().__init__()
        _positive("MoCo", gamma=gamma)
        _non_negative("MoCo", beta_sigma=beta_sigma, gamma_sigma=gamma_sigma, rho=rho)
        if not (isinstance(beta, (int, float)) and 0 < beta <= 1):
            raise ValueError(f"MoCo beta must be in (0, 1], got {beta!r}")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.gamma, self.gamma_sigma, self.rho = float(gamma), float(gamma_sigma), float(rho)
        self.normalize = check_flag("MoCo", "normalize", normalize)
        self.y: Tensor | None = None
        self.lam: Tensor | None = None
        self.steps = 0

    def reset(self) -> None:
        super().reset()
        self.y, self.lam, self.steps = None, None, 0

    def _combine(self, losses: Tensor, grads: Tensor | None) -> Combined:
        self.steps += 1
        scale = torch.ones(losses.numel(), dtype=torch.float32 if grads.dtype in (
            torch.float16, torch.bfloat16) else grads.dtype, device=grads.device)
        if self.normalize:
            n = row_norms(grads)
            scale = at_work(losses).to(n) / (n + 1e-8)
        h = grads.to(scale.dtype) * scale[:, None]
        if self.y is None or self.y.shape != h.shape:
            self.y = torch.zeros_like(h)
            self.lam = torch.full((h.shape[0],), 1.0 / h.shape[0], dtype=h.dtype,
                                  device=h.device)
        b = self.beta / self.steps**self.beta_sigma
        g = self.gamma / self.steps**self.gamma_sigma
        self.y = self.y.to(h) + b * (h - self.y.to(h))
        self.lam = moco_lambda_step(self.lam.to(h), self.y @ self.y.T, g, self.rho)
        return (self.lam @ self.y).to(grads.dtype), self.lam * b * scale


@register
class MoDo(GramWeighting):
    """MoDo: multi-objective gradient with double sampling (Chen et al. 2023, Eq. 2.9):

        lambda <- Pi_simplex(lambda - gamma (G_1 G_2^T lambda + rho lambda)),   lambda^0 = 1/T,
        d = G_3^T lambda,

    here with G_1 = G_2 = G_3 = G (one batch per call; see the module docstring): one
    projected-gradient step per call on MGDA's objective lambda^T M lambda / 2 + rho
    ||lambda||^2 / 2, warm-started at the previous lambda.  The returned weights are
    lambda (on the simplex), d = G^T lambda.

    Parameters
    ----------
    gamma:
        Step size of lambda (default 1e-3, LibMTL's; the papers tune it per problem: it
        multiplies M, so it depends on the gradients' scale).
    rho:
        l2 regularisation of lambda (default 0.1).
    """

    name = "MoDo"

    def __init__(self, gamma: float = 1e-3, rho: float = 0.1) -> None:
        super().__init__()
        _positive("MoDo", gamma=gamma)
        _non_negative("MoDo", rho=rho)
        self.gamma, self.rho = float(gamma), float(rho)
        self.lam: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.lam = None

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        t = gram.shape[0]
        lam = torch.full((t,), 1.0 / t, dtype=gram.dtype, device=gram.device) \
            if self.lam is None else self.lam.to(gram)
        self.lam = moco_lambda_step(lam, torch.nan_to_num(gram), self.gamma, self.rho)
        return self.lam


def sdmgrad_weights(w: Tensor, a: Tensor, lamda: float, lr: float, momentum: float,
                    iters: int) -> Tensor:
    """SDMGrad's inner solve (Xiao et al. 2023, Algorithm 1): ``iters`` projected SGD steps
    with momentum on min_{w in simplex} 1/2 ||G^T (w + lamda w0)||^2, w0 = 1/T, whose
    gradient is A (w + lamda w0), with A = M / s^2, s = mean_t sqrt(M_tt) (the scale
    normalisation of the authors' code and LibMTL).  Returns the new w."""
    t = a.shape[0]
    w0 = torch.full_like(w, 1.0 / t)
    velocity = torch.zeros_like(w)
    for k in range(iters):
        grad = a @ (w + lamda * w0)
        velocity = grad if k == 0 else momentum * velocity + grad
        w = project_simplex(w - lr * velocity)
    return w


@register
class SDMGrad(GramWeighting):
    """SDMGrad: stochastic direction-oriented multi-objective gradient (Xiao, Ban & Ji,
    NeurIPS 2023, Algorithm 1 and Eq. 6):

        w = argmin_{w in simplex} 1/2 ||G^T w + lamda g0||^2   (a few momentum steps,
                                                               :func:`sdmgrad_weights`)
        d = (G^T w + lamda g0) / (1 + lamda),   g0 = G^T 1/T,

    so the returned weights are (w + lamda / T) / (1 + lamda) and d = G^T weights.  lamda
    = 0 is (an approximate) MGDA, lamda -> inf the mean gradient.  The inner solve is warm
    started at the previous call's w (the authors' code); one batch per call (see the
    module docstring).

    Parameters
    ----------
    lamda:
        Pull towards the mean gradient (default 0.3, the authors' experiments and LibMTL).
    lr, momentum, iters:
        Inner SGD: step size 5, momentum 0.5, 20 iterations (LibMTL's values).
    """

    name = "SDMGrad"

    def __init__(self, lamda: float = 0.3, lr: float = 5.0, momentum: float = 0.5,
                 iters: int = 20) -> None:
        super().__init__()
        _non_negative("SDMGrad", lamda=lamda)
        _positive("SDMGrad", lr=lr)
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"SDMGrad momentum must be in [0, 1), got {momentum!r}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"SDMGrad iters must be a positive int, got {iters!r}")
        self.lamda, self.lr, self.momentum, self.iters = float(lamda), float(lr), \
            float(momentum), iters
        self.w: Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self.w = None

    def _gram_weights(self, losses: Tensor, gram: Tensor) -> Tensor:
        t = gram.shape[0]
        m = torch.nan_to_num(gram)
        s = m.diagonal().clamp_min(0).sqrt().mean()
        a = m / (s * s + 1e-8)
        w = torch.full((t,), 1.0 / t, dtype=m.dtype, device=m.device) if self.w is None \
            else self.w.to(m)
        self.w = sdmgrad_weights(w, a, self.lamda, self.lr, self.momentum, self.iters)
        return (self.w + self.lamda / t) / (1 + self.lamda)
