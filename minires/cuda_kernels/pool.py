"""Max pooling as CUDA kernels: the forward pass records where each maximum was, the
backward pass routes each window's gradient back there.

Same conventions as ``minires/ops/pool.py``: ``argmax`` holds the flat offset
``i*KW + j`` of the winner inside its window, ties go to the first offset (numpy's
``argmax``), a NaN wins and propagates, and padding never wins. The reference pads with
-inf; the kernel simply never looks at padding. (The two differ only for a window whose
real values are all -inf and that starts in the padding: the reference then names a
padding offset, the kernel a real one.)

The backward kernel is a gather, like col2im: one thread per input pixel sums the
gradients of the windows whose maximum it was. Overlapping windows (stride < kernel)
are why the sum is needed, and the gather needs no atomics for it.
"""

from __future__ import annotations

import numpy

from ..ops.geometry import output_size
from ..ops.pool import max_pool2d_backward as _max_pool2d_backward
from ..ops.pool import max_pool2d_forward as _max_pool2d_forward
from ._launch import Source, int32, launch, supported, window_fits_int32

SOURCE = Source(r"""
// x, gx: (N, C, H, W); y, gy, argmax: (N, C, OH, OW), all C-contiguous.
// Window (oh, ow) covers input rows oh*SH - PH + i and columns ow*SW - PW + j for
// 0 <= i < KH, 0 <= j < KW; rows and columns outside [0, H) x [0, W) are padding.

// Forward: one thread per output element.
template <typename T>
__global__ void max_pool2d_forward(const T* x, T* y, long long* argmax,
                                   int H, int W, int KH, int KW, int SH, int SW,
                                   int PH, int PW, int OH, int OW, int total)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into y
    if (k >= total) return;
    int ow = k % OW, oh = (k / OW) % OH, plane = k / (OW * OH);  // plane = n*C + c
    const T* image = x + plane * H * W;
    T best = 0;
    int best_offset = -1;  // none yet: padding is skipped, never a candidate
    for (int i = 0; i < KH; ++i) {
        int h = oh * SH - PH + i;
        if (h < 0 || h >= H) continue;
        for (int j = 0; j < KW; ++j) {
            int w = ow * SW - PW + j;
            if (w < 0 || w >= W) continue;
            T v = image[h * W + w];
            // '>' keeps the first of equal values, as numpy's argmax does. A NaN (the
            // one value with v != v) replaces a number, and then nothing replaces it.
            if (best_offset < 0 || v > best || (v != v && best == best)) {
                best = v;
                best_offset = i * KW + j;
            }
        }
    }
    // every window holds a real pixel: the wrapper sends padding >= kernel elsewhere
    y[k] = best;
    argmax[k] = best_offset;
}

// Backward: one thread per input pixel (h, w). Window (oh, ow) covers it at offset
// i = h + PH - oh*SH, j = w + PW - ow*SW; the thread adds gy of every window whose
// argmax is that offset. The (i, j) order matches the reference's loop.
template <typename T>
__global__ void max_pool2d_backward(const T* gy, const long long* argmax, T* gx,
                                    int H, int W, int KH, int KW, int SH, int SW,
                                    int PH, int PW, int OH, int OW, int total)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx
    if (k >= total) return;
    int w = k % W, h = (k / W) % H, plane = k / (W * H);
    const T* gy_plane = gy + plane * OH * OW;
    const long long* argmax_plane = argmax + plane * OH * OW;
    T sum = 0;
    for (int i = 0; i < KH; ++i) {
        int hs = h + PH - i;                   // = oh * SH for the window with offset i
        if (hs < 0 || hs % SH != 0) continue;  // sign first: % of a negative is <= 0
        int oh = hs / SH;
        if (oh >= OH) continue;
        for (int j = 0; j < KW; ++j) {
            int ws = w + PW - j;
            if (ws < 0 || ws % SW != 0) continue;
            int ow = ws / SW;
            if (ow >= OW) continue;
            int o = oh * OW + ow;
            if (argmax_plane[o] == i * KW + j) sum += gy_plane[o];
        }
    }
    gx[k] = sum;
}
""", kernels=("max_pool2d_forward", "max_pool2d_backward"))


def max_pool2d_forward(xp, x, KH, KW, stride, padding):
    """CUDA version of ``minires.ops.pool.max_pool2d_forward`` -> (y, argmax int64)."""
    N, C, H, W = x.shape
    (SH, SW), (PH, PW) = stride, padding
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    # with padding >= kernel a window could hold padding only; max_pool2d forbids
    # padding > kernel/2 anyway, so only a direct call gets here, and the reference
    # answers it
    if PH >= KH or PW >= KW or OH < 1 or OW < 1 or not supported(x) or \
            not window_fits_int32(H, W, KH, KW, padding):
        return _max_pool2d_forward.reference(xp, x, KH, KW, stride, padding)
    x = xp.ascontiguousarray(x)
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=numpy.int64)  # numpy's argmax gives int64
    launch(SOURCE.function("max_pool2d_forward", x.dtype), y.size,
           (x, y, argmax, *int32(H, W, KH, KW, SH, SW, PH, PW, OH, OW, y.size)))
    return y, argmax


def max_pool2d_backward(xp, gy, argmax, x_shape, KH, KW, stride, padding):
    """CUDA version of ``minires.ops.pool.max_pool2d_backward`` -> gx (N, C, H, W)."""
    N, C, H, W = x_shape
    (SH, SW), (PH, PW) = stride, padding
    OH, OW = output_size(H, KH, SH, PH), output_size(W, KW, SW, PW)
    gx = xp.empty((N, C, H, W), dtype=gy.dtype)
    if gy.shape != (N, C, OH, OW) or argmax.shape != gy.shape or not supported(gy, gx) or \
            not window_fits_int32(H, W, KH, KW, padding):
        return _max_pool2d_backward.reference(xp, gy, argmax, x_shape, KH, KW, stride,
                                              padding)
    gy = xp.ascontiguousarray(gy)
    argmax = xp.ascontiguousarray(argmax, dtype=numpy.int64)
    launch(SOURCE.function("max_pool2d_backward", gy.dtype), gx.size,
           (gy, argmax, gx, *int32(H, W, KH, KW, SH, SW, PH, PW, OH, OW, gx.size)))
    return gx
