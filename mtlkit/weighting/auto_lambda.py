"""Auto-lambda (Liu, Johns & Davison, "Auto-Lambda: Disentangling Dynamic Task
Relationships", TMLR 2022), written as the column-sum sibling of MetaWeighting.

Auto-lambda minimises the *sum* of validation losses after one virtual step::

    min_w  sum_t L^val_t(theta - eta sum_j (w_j/T) g_j)

so its hypergradient is the column sum of the same T x T matrix D of
:func:`mtlkit.weighting.metaweighting.hypergradient_matrix`:
dL/dw_j = sum_t D[t, j] = -(eta/T) sum_t <g^val_t, g_j>, where MetaWeighting
takes the min-norm combination of the rows of D.  Its "validation" batch is
another *training* batch, not a held-out query split: here the next training
batch, whose gradients the engine computes anyway, so Auto-lambda costs one
forward and T backward passes per step (no query batch, ``needs_query=False``).
"""

from __future__ import annotations

from mtlkit.weighting.base import register
from mtlkit.weighting.metaweighting import Hypergradient


@register
class AutoLambda(Hypergradient):
    """Auto-lambda (Liu et al. 2022, Eq. 3 with the one-step approximation).

    w <- constrain(w - alpha 1^T D), D[t, j] = -(eta/T) <g_t(theta^k), g_j(theta^{k-1})>,
    where g(theta^k) are the gradients of the *next training batch* (the
    validation batch of Auto-lambda).  Runs in the engine's ``param`` mode:
    the rows of D cover the shared parameters only and heads are trained with
    their own unweighted loss, as for every gradient-mode strategy.  Together
    with MetaWeighting's ``reduce`` option this gives the 2 x 2 ablation
    {min-norm, sum} x {held-out query, training batch} of
    ``notebooks/30_hypergradients_and_metaweighting.ipynb``.

    Differences from the authors' setup, chosen so that the ablation isolates
    the two ideas: w is updated by a plain gradient step of size ``alpha``
    (the authors use Adam on lambda), and w0 = ``init`` for every task.

    Parameters
    ----------
    alpha:
        Hypergradient step size.
    reduce:
        ``"sum"`` (Auto-lambda) or ``"minnorm"`` (ablation: MetaWeighting's reduction).
    inner:
        ``"sgd"`` (Eq. 10's eta/T) or ``"adam"`` (the Adam step actually taken).
    eta:
        Inner learning rate; None reads it from the attached optimiser.
    constraint:
        ``"clamp"`` (w >= 0, default), ``"simplex"`` or ``"none"``.
    init:
        w0.
    fw_iters, solver:
        Min-norm solver settings (only with ``reduce="minnorm"``; see MetaWeighting).
    """

    name = "AutoLambda"
    needs_query = False

    def __init__(self, alpha: float = 0.1, reduce: str = "sum", inner: str = "sgd",
                 eta: float | None = None, constraint: str = "clamp",
                 init: float = 1.0, fw_iters: int = 250, solver: str = "auto") -> None:
        super().__init__(alpha, reduce, inner, eta, constraint, init, fw_iters, solver)
