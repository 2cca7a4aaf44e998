"""Softmax cross-entropy forward as one CUDA kernel: log-softmax and the negative
log-likelihood of each row in one pass over the logits.

The reference (``minires/ops/loss.py``) builds the (N, C) log-probabilities with five
array operations (max, subtract, exp, sum, log) and then picks and averages. Here one
thread handles one row and keeps every intermediate in registers. A classifier has few
classes (10 for CIFAR, 1000 for ImageNet), so three loops over a row are cheap; for
very wide rows a block per row with a shared-memory reduction would be the next step.
"""

from __future__ import annotations

import numpy

from ..ops.loss import cross_entropy_forward as _cross_entropy_forward
from ._launch import Source, int32, launch, supported

SOURCE = Source(r"""
// x, p: (N, C) C-contiguous; target: (N,) int64; loss: (N,).
// With m the row's maximum (subtracting it keeps exp from overflowing):
//   log p[c] = (x[c] - m) - log(sum_c' exp(x[c'] - m))       log-softmax
//   loss = (1 - s) * (-log p[target]) - s * mean_c log p[c]   label smoothing s
// The operations and their order follow the reference, so the float results agree.
template <typename T>
__global__ void cross_entropy_forward(const T* x, const long long* target, T* loss, T* p,
                                      int N, int C, T smoothing)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;  // one thread per row
    if (n >= N) return;
    const T* row = x + n * C;
    T* p_row = p + n * C;
    T m = row[0];
    for (int c = 1; c < C; ++c) m = fmax(m, row[c]);
    T denominator = 0;
    for (int c = 0; c < C; ++c) denominator += exp(row[c] - m);
    T log_denominator = log(denominator);
    T sum_logp = 0;
    for (int c = 0; c < C; ++c) {
        T logp = (row[c] - m) - log_denominator;
        sum_logp += logp;
        p_row[c] = exp(logp);  // the softmax, saved for the backward pass
    }
    long long t = target[n];
    // cross_entropy checks the targets first; an index out of range must still read no
    // memory outside the row. NVRTC has no NAN macro, and 0/0 is NaN in IEEE arithmetic.
    T zero = 0;
    T nll = (0 <= t && t < C) ? -((row[t] - m) - log_denominator) : zero / zero;
    loss[n] = (1 - smoothing) * nll - smoothing * (sum_logp / C);
}
""", kernels=("cross_entropy_forward",))


def cross_entropy_forward(xp, x, target, label_smoothing):
    """CUDA version of ``minires.ops.loss.cross_entropy_forward`` -> (loss (N,), p (N, C))."""
    if x.ndim != 2 or target.shape != x.shape[:1] or x.shape[1] == 0 or not supported(x):
        return _cross_entropy_forward.reference(xp, x, target, label_smoothing)
    N, C = x.shape
    x = xp.ascontiguousarray(x)
    target = xp.ascontiguousarray(target, dtype=numpy.int64)
    loss = xp.empty((N,), dtype=x.dtype)
    p = xp.empty((N, C), dtype=x.dtype)
    launch(SOURCE.function("cross_entropy_forward", x.dtype), N,
           (x, target, loss, p, *int32(N, C), x.dtype.type(label_smoothing)))
    return loss, p
