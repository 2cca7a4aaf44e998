"""The BatchNorm backward pass as one fused elementwise kernel.

The reference (``minires/ops/norm.py``) computes, per channel, the sums
``gb = sum gy`` and ``gw = sum gy * xhat`` and then

    gx = scale * (gy - (xhat * gw / M + gb / M))      (training; M values per channel)
    gx = scale * gy                                   (eval: the statistics are constants)

in four array operations, each a full pass over memory. The sums stay CuPy reductions
here; the kernel does the rest in one pass: read gy and xhat once, write gx once.
"""

from __future__ import annotations

from ..ops.norm import batch_norm_backward as _batch_norm_backward
from ._launch import Source, int32, launch, supported

SOURCE = Source(r"""
// gy, xhat, gx: (N, C, *spatial), C-contiguous; scale, gw_mean (= gw / M) and
// gb_mean (= gb / M): (C,). In a dense (N, C, *spatial) array the element at flat
// index k belongs to channel (k / inner) % C, where inner is the product of the
// spatial sizes (1 for an (N, C) input).
template <typename T>
__global__ void batch_norm_backward(const T* gy, const T* xhat, const T* scale,
                                    const T* gw_mean, const T* gb_mean, T* gx,
                                    int C, int inner, int training, int total)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= total) return;
    int c = (k / inner) % C;
    T g = gy[k];
    if (training)  // the batch mean and variance depend on x too: two more terms
        g -= xhat[k] * gw_mean[c] + gb_mean[c];
    gx[k] = scale[c] * g;
}
""", kernels=("batch_norm_backward",))


def batch_norm_backward(xp, gy, xhat, scale, training):
    """CUDA version of ``minires.ops.norm.batch_norm_backward`` -> (gx, gw, gb)."""
    C = gy.shape[1] if gy.ndim >= 2 else 0
    if (gy.ndim < 2 or gy.size == 0 or xhat.shape != gy.shape or scale.size != C
            or not xhat.dtype == scale.dtype == gy.dtype or not supported(gy, xhat, scale)):
        return _batch_norm_backward.reference(xp, gy, xhat, scale, training)
    axes = (0,) + tuple(range(2, gy.ndim))  # every axis but the channel axis 1
    gb = gy.sum(axis=axes, keepdims=True)  # (1, C, 1, 1): CuPy's reductions
    gw = (gy * xhat).sum(axis=axes, keepdims=True)
    M = gy.size // C  # values per channel
    gy, xhat = xp.ascontiguousarray(gy), xp.ascontiguousarray(xhat)
    gx = xp.empty(gy.shape, dtype=gy.dtype)
    inner = gy.size // (gy.shape[0] * C)  # product of the spatial sizes
    launch(SOURCE.function("batch_norm_backward", gy.dtype), gx.size,
           (gy, xhat, xp.ascontiguousarray(scale.reshape(-1)),
            xp.ascontiguousarray((gw / M).reshape(-1)),
            xp.ascontiguousarray((gb / M).reshape(-1)), gx,
            *int32(C, inner, bool(training), gx.size)))
    return gx, gw, gb
