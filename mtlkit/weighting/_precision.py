"""Precision rules shared by every strategy, and the two products with the T x P
gradient matrix G (the only work on G besides the engine's).

* The small math (T-vectors, T x T matrices, learnable weights) runs in
  :func:`work_dtype`: float32 for float16/bfloat16 input, else the input's dtype.
  float16 holds neither a weight such as 1/(T eps^2) (max 65504) nor a learning-rate
  sized update of a weight near 1 (3 significant digits); bfloat16 has 8 bits.
* :func:`inner_products` (A B^T, e.g. the Gram matrix) and :func:`combine_rows`
  (G^T w) accumulate half-precision G in float32, so they overflow only where the
  result itself does: a Gram entry of float16 gradients easily exceeds 65504.
"""

from __future__ import annotations

import torch
from torch import Tensor

HALF = (torch.float16, torch.bfloat16)
#: columns per block of :func:`inner_products` on the CPU (two T x 16384 float32
#: blocks stay in cache; measured 2x faster than one call at T = 14, P = 2e5)
CPU_BLOCK = 16384
#: columns per block when half-precision G is converted to float32 off the CPU
HALF_BLOCK = 1 << 20


def work_dtype(x: Tensor) -> torch.dtype:
    """The dtype of a strategy's T-vector and T x T math for input ``x``: float32 for
    float16 and bfloat16, else ``x``'s own (float32 or float64)."""
    return torch.float32 if x.dtype in HALF else x.dtype


def at_work(x: Tensor) -> Tensor:
    """``x`` detached, in :func:`work_dtype` (a T-vector or T x T matrix: cheap)."""
    return x.detach().to(work_dtype(x))


def _block(x: Tensor) -> int:
    return CPU_BLOCK if x.device.type == "cpu" else HALF_BLOCK


def inner_products(a: Tensor, b: Tensor) -> Tensor:
    """A B^T for two wide T x P matrices, in float32 for half input.  On the CPU,
    summed over column blocks of :data:`CPU_BLOCK` (a skinny product of long rows is
    memory-bound, and blocking keeps both operands in cache; a half block is converted
    to float32 first); on CUDA one matmul (half input: float32 output, ``out_dtype``);
    elsewhere half input is converted block by block."""
    p, half = a.shape[1], a.dtype in HALF or b.dtype in HALF
    if a.device.type == "cuda" and half and a.dtype == b.dtype:
        try:
            return torch.mm(a, b.T, out_dtype=torch.float32)
        except RuntimeError:  # a build without the float32-output kernel: blocks below
            pass
    if not half and (a.device.type != "cpu" or p <= 2 * CPU_BLOCK):
        return a @ b.T
    block, dtype = _block(a), torch.promote_types(work_dtype(a), work_dtype(b))

    def part(x: Tensor, i: int) -> Tensor:
        return x[:, i:i + block].to(dtype)

    out = part(a, 0) @ part(b, 0).T
    for i in range(block, p, block):
        out.addmm_(part(a, i), part(b, i).T)
    return out


def combine_rows(w: Tensor, g: Tensor) -> Tensor:
    """d = G^T w in G's dtype.  For half G accumulated in float32 over column blocks
    (w is not cast to G's dtype: a weight above 65504 on a zero row must not make inf *
    0 = NaN), so d overflows only where it is out of the dtype's range."""
    if g.dtype not in HALF:
        return w.to(g.dtype) @ g
    w, block = w.float(), _block(g)
    return torch.cat([w @ g[:, i:i + block].float() for i in range(0, g.shape[1], block)]
                     ).to(g.dtype)


def row_norms(x: Tensor) -> Tensor:
    """||x_t|| for every row of a wide T x P matrix, in :func:`work_dtype`, without the
    overflow of a float32 sum of squares (rows of 1e20 have finite norms): accumulated
    in float64 over column blocks (float32 on MPS, which has no float64)."""
    if x.dtype == torch.float64:
        return torch.linalg.vector_norm(x, dim=1)
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    block = _block(x)
    sq = sum(torch.linalg.vector_norm(x[:, i:i + block], dim=1, dtype=acc) ** 2
             for i in range(0, x.shape[1], block))
    return sq.sqrt().to(work_dtype(x))
