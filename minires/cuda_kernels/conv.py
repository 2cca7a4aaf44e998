"""im2col and col2im as CUDA kernels: one thread per element of the array they write.

The pure-xp versions in ``minires/ops/conv.py`` build the patch matrix through a
strided view (im2col) and add KH*KW strided slabs (col2im). On a GPU each slab is a
separate kernel launch and a separate pass over memory; the kernels below do each job
in a single pass.

col2im is written as a *gather*: each thread owns one input-gradient pixel and sums the
patch entries that were copied from it. The obvious *scatter* (one thread per patch
entry, ``atomicAdd`` into the image) needs atomics, and float atomics make the sum's
rounding depend on thread timing, so two runs could differ. The gather needs neither.
"""

from __future__ import annotations

from ..ops.conv import col2im as _col2im
from ..ops.conv import im2col as _im2col
from ..ops.geometry import output_size
from ._launch import Source, int32, launch, supported, window_fits_int32

SOURCE = Source(r"""
// Layouts (all C-contiguous):
//   x, gx : (N, C, H, W)
//   col   : (C*KH*KW, N*OH*OW); row (c, i, j) is a kernel offset of channel c,
//           column (n, oh, ow) an output pixel. Entry [(c, i, j), (n, oh, ow)] holds
//           x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW], or 0 where that is padding.

// im2col: one thread per entry of col. Neighbouring threads take neighbouring columns
// (ow varies fastest), so their writes to col coalesce into few memory transactions.
template <typename T>
__global__ void im2col(const T* x, T* col,
                       int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW,
                       int OH, int OW, int total)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into col
    if (k >= total) return;                          // the last block may run past the end
    int columns = N * OH * OW;
    int row = k / columns, column = k % columns;
    int j = row % KW, i = (row / KW) % KH, c = row / (KW * KH);
    int ow = column % OW, oh = (column / OW) % OH, n = column / (OW * OH);
    int h = oh * SH - PH + i * DH;  // the input pixel, in unpadded coordinates
    int w = ow * SW - PW + j * DW;
    bool inside = 0 <= h && h < H && 0 <= w && w < W;
    col[k] = inside ? x[((n * C + c) * H + h) * W + w] : T(0);  // padding is never stored
}

// col2im: one thread per pixel of gx, summing every col entry that im2col copied from
// that pixel. Entry (i, j) of the patch of output pixel (oh, ow) came from
//   h = oh*SH - PH + i*DH   =>   oh = (h + PH - i*DH) / SH, when that divides exactly,
// and likewise for w. No other thread writes gx[k]: no atomics, and the same result on
// every run. The (i, j) order matches the reference's loop, so the float sums agree.
template <typename T>
__global__ void col2im(const T* col, T* gx,
                       int N, int C, int H, int W, int KH, int KW,
                       int SH, int SW, int PH, int PW, int DH, int DW,
                       int OH, int OW, int total)
{
    int k = blockIdx.x * blockDim.x + threadIdx.x;  // flat index into gx
    if (k >= total) return;
    int w = k % W, h = (k / W) % H, c = (k / (W * H)) % C, n = k / (W * H * C);
    int columns = N * OH * OW;
    T sum = 0;
    for (int i = 0; i < KH; ++i) {
        int hs = h + PH - i * DH;            // = oh * SH if some patch row i lands here
        if (hs < 0 || hs % SH != 0) continue;  // test the sign first: C's % of a negative
        int oh = hs / SH;                      // number is negative or zero
        if (oh >= OH) continue;
        for (int j = 0; j < KW; ++j) {
            int ws = w + PW - j * DW;
            if (ws < 0 || ws % SW != 0) continue;
            int ow = ws / SW;
            if (ow >= OW) continue;
            sum += col[((c * KH + i) * KW + j) * columns + (n * OH + oh) * OW + ow];
        }
    }
    gx[k] = sum;
}
""", kernels=("im2col", "col2im"))


def im2col(xp, x, KH, KW, stride, padding, dilation=(1, 1)):
    """CUDA version of ``minires.ops.conv.im2col``: (N, C, H, W) -> (C*KH*KW, N*OH*OW)."""
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    col = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    if not supported(x, col) or not window_fits_int32(H, W, KH, KW, padding):
        # other dtypes, or too large for 32-bit indices
        return _im2col.reference(xp, x, KH, KW, stride, padding, dilation)
    x = xp.ascontiguousarray(x)  # the kernel indexes x as a dense array
    launch(SOURCE.function("im2col", x.dtype), col.size,
           (x, col, *int32(N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, col.size)))
    return col


def col2im(xp, col, x_shape, KH, KW, stride, padding, dilation=(1, 1)):
    """CUDA version of ``minires.ops.conv.col2im``: (C*KH*KW, N*OH*OW) -> (N, C, H, W)."""
    N, C, H, W = x_shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    gx = xp.empty((N, C, H, W), dtype=col.dtype)
    if col.size != C * KH * KW * N * OH * OW or not supported(col, gx) or \
            not window_fits_int32(H, W, KH, KW, padding):
        # the reference raises the right error for a col of the wrong size
        return _col2im.reference(xp, col, x_shape, KH, KW, stride, padding, dilation)
    col = xp.ascontiguousarray(col)
    launch(SOURCE.function("col2im", col.dtype), gx.size,
           (col, gx, *int32(N, C, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, gx.size)))
    return gx
