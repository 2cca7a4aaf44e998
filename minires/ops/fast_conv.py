"""2-D convolution on channel-major padded grids: the CPU fast path of ``nn.Conv2d``.

The same mathematics as ``conv.py`` (im2col, one matrix multiply, and two more for the
gradients), on the layout of ``channel_major``: input and output are (C, L) grids whose
pixels the user sees as NCHW views. Two ways to build the im2col matrix:

* "same" convolutions (stride 1, a KxK kernel with padding (K-1)/2: 3x3 with padding 1,
  1x1 without): every kernel offset is a fixed flat shift on the grid, so each of the
  K*K row blocks of the matrix is ONE contiguous block copy per channel, and the matrix
  multiply writes its result straight onto the output grid. The input gradient is the
  same kind of convolution (of the output gradient, with the kernel flipped), so it
  takes the same path. A 1x1 convolution needs no copy at all: the grid is its matrix.
* any other stride or kernel with padding 0 or 1 (the stride-2 convolutions of a
  ResNet): a strided view of the grid's padded images gives the matrix in one copy,
  and its gradient is added back (col2im) through the same view.

Neither path keeps its im2col matrix for backward (that matrix is K*K times the input:
most of the plain path's memory). Backward rebuilds it from the saved input grid, in a
scratch buffer that every layer shares (``channel_major.workspace``).
"""

from __future__ import annotations

from .. import backend, cpu_threads, precision
from ..autograd import Function
from ..tensors import Tensor
from . import channel_major as cm
from .arguments import check_conv_args
from .geometry import output_shape, pair


def supports(kernel_size, stride, padding, dilation=1) -> bool:
    """Whether this convolution's geometry has a fast path: a square kernel, equal
    strides, equal padding of 0 or 1, no dilation."""
    (KH, KW), (SH, SW) = pair(kernel_size, "kernel_size", "conv2d"), pair(stride, "stride",
                                                                            "conv2d")
    (PH, PW), dilation = pair(padding, "padding", "conv2d"), pair(dilation, "dilation",
                                                                  "conv2d")
    return KH == KW and SH == SW and PH == PW <= 1 and dilation == (1, 1)


def _is_same(K: int, stride: int, padding: int) -> bool:
    return stride == 1 and K == 2 * padding + 1


def _matmul_part(a, b, out):
    """``out[...] = a @ b``, written in place when no TF32/bfloat16 rounding is asked for."""
    if precision.get_float32_matmul_precision() == "highest" or a.dtype.char != "f":
        backend.array_module(a).matmul(a, b, out=out)
    else:
        out[...] = precision.matmul(a, b)


def _matmul_into(xp, a, b, out):
    """``out[...] = a @ b``, the columns cut into one part per CPU thread."""
    cpu_threads.parallel_rows(xp, b.shape[1], lambda lo, hi: _matmul_part(a, b[:, lo:hi],
                                                                      out[:, lo:hi]))
    return out


def _matmul_nt(xp, a, b):
    """``a @ b.T`` for two wide matrices (the weight gradient): the long inner dimension
    cut into one part per CPU thread, the partial products added in a fixed order."""
    partial = {}

    def part(lo, hi):
        partial[lo] = precision.matmul(a[:, lo:hi], b[:, lo:hi].T)  # (rows of a, rows of b)

    cpu_threads.parallel_rows(xp, a.shape[1], part)
    total = None
    for lo in sorted(partial):
        total = partial[lo] if total is None else total + partial[lo]
    return total


# --------------------------------------------------------------- same convolutions


def _shifts(grid: cm.Grid, K: int):
    """Flat shift of every kernel offset (i, j), in the order of w.reshape(F, C*K*K)."""
    P = (K - 1) // 2
    return [grid.shift(i - P, j - P) for i in range(K) for j in range(K)]


def im2col_same(xp, G, grid: cm.Grid, K: int):
    """(C, L) grid -> (C*K*K, span) im2col matrix of its pixels' block, K*K block copies
    per channel. For K == 1 the grid's own block (no copy)."""
    start, span = grid.first, grid.span
    if K == 1:
        return G[:, start:start + span]  # (C, span), a view
    C = G.shape[0]
    col = cm.workspace(xp, (C, K * K, span), G.dtype)
    shifts = _shifts(grid, K)

    def copy(lo, hi):  # channels lo..hi
        for k, d in enumerate(shifts):
            col[lo:hi, k, :] = G[lo:hi, start + d:start + d + span]  # one block per channel

    cpu_threads.parallel_rows(xp, C, copy)
    return col.reshape(C * K * K, span)  # (C*K*K, span)


def _conv_same(xp, G, grid: cm.Grid, w2, K: int):
    """y = w2 @ im2col(G) on the block of pixels, onto a new grid of the same shape."""
    start, span = grid.first, grid.span
    Y = cm.new_grid(xp, w2.shape[0], grid, G.dtype)
    _matmul_into(xp, w2, im2col_same(xp, G, grid, K), Y[:, start:start + span])
    return cm.zero_pads(Y, grid)  # the block also covered the zero positions


# --------------------------------------------------------------- strided convolutions


def _patches(xp, G, grid: cm.Grid, K: int, stride: int, padding: int, OH: int, OW: int):
    """(C, K, K, N, OH, OW) view: patches[c, i, j, n, oh, ow] is input (n, c) at
    padded position (oh*stride + i, ow*stride + j), padding 0 or 1."""
    images = cm.padded_images(xp, G, grid, offset=1 - padding)  # (C, N, H', W')
    sC, sN, sH, sW = images.strides
    return backend.as_strided(xp, images, (G.shape[0], K, K, grid.N, OH, OW),
                              (sC, sH, sW, sN, sH * stride, sW * stride))


def im2col_strided(xp, G, grid: cm.Grid, K: int, stride: int, padding: int, OH: int,
                   OW: int):
    """(C, L) grid -> (C*K*K, N*OH*OW) im2col matrix, one strided copy."""
    C = G.shape[0]
    col = cm.workspace(xp, (C, K, K, grid.N, OH, OW), G.dtype)
    patches = _patches(xp, G, grid, K, stride, padding, OH, OW)

    def copy(lo, hi):
        col[lo:hi] = patches[lo:hi]

    cpu_threads.parallel_rows(xp, C, copy)
    return col.reshape(C * K * K, grid.N * OH * OW)  # (C*K*K, N*OH*OW)


class GridConv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, *, stride, padding):
        xp = ctx.xp
        F, C, K, _ = w.shape
        G, grid = cm.as_grid(xp, x)
        N, H, W = grid.N, grid.H, grid.W
        OH, OW = output_shape(H, W, (K, K), (stride, stride), (padding, padding))
        out = cm.Grid(N, OH, OW)
        w2 = w.reshape(F, C * K * K)  # (F, C*K*K)
        if _is_same(K, stride, padding):
            Y = _conv_same(xp, G, grid, w2, K)
        else:
            col = im2col_strided(xp, G, grid, K, stride, padding, OH, OW)
            y = _matmul_into(xp, w2, col, xp.empty((F, N * OH * OW), dtype=x.dtype))
            Y = cm.new_grid(xp, F, out, x.dtype)
            cm.copy_rows(xp, cm.pixels(Y, out), y.reshape(F, N, OH, OW))  # (F, N, OH, OW)
            cm.zero_pads(Y, out)
        if b is not None:
            Y += b[:, None]
            cm.zero_pads(Y, out)
        ctx.save_for_backward(G, w)
        ctx.grids, ctx.geometry = (grid, out), (K, stride, padding)
        return cm.grid_view(Y, out)

    @staticmethod
    def backward(ctx, gy):
        # y = w @ col(x) + b  =>  gw = gy @ col(x)^T,  gb = sum of gy,
        #   same convolutions: gx = (flipped w) applied to gy the same way (a convolution),
        #   strided ones:      gx = col2im(w^T @ gy)
        G, w = ctx.saved_tensors
        xp = ctx.xp
        grid, out = ctx.grids
        K, stride, padding = ctx.geometry
        F, C = w.shape[:2]
        GY, _ = cm.as_grid(xp, gy)
        gx = gw = None
        if _is_same(K, stride, padding):
            start, span = grid.first, grid.span
            gy_block = GY[:, start:start + span]  # (F, span); zero where no pixel
            if ctx.needs_input_grad[1]:
                # (col @ gy^T)^T: OpenBLAS is far faster in this orientation (see conv.py)
                gw = _matmul_nt(xp, im2col_same(xp, G, grid, K), gy_block)  # (C*K*K, F)
                gw = gw.T.reshape(w.shape)  # (F, C, K, K)
            if ctx.needs_input_grad[0]:
                w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, K, K)
                w_flipped = xp.ascontiguousarray(w_flipped).reshape(C, F * K * K)  # (C, F*K*K)
                gx = cm.grid_view(_conv_same(xp, GY, grid, w_flipped, K), grid)
        else:
            N, OH, OW = out.N, out.H, out.W
            gy2 = xp.empty((F, N, OH, OW), dtype=gy.dtype)
            cm.copy_rows(xp, gy2, cm.pixels(GY, out))
            gy2 = gy2.reshape(F, N * OH * OW)  # (F, N*OH*OW)
            if ctx.needs_input_grad[1]:
                col = im2col_strided(xp, G, grid, K, stride, padding, OH, OW)
                gw = _matmul_nt(xp, col, gy2).T.reshape(w.shape)  # (F, C, K, K)
            if ctx.needs_input_grad[0]:
                gcol = cm.workspace(xp, (C * K * K, N * OH * OW), w.dtype)
                _matmul_into(xp, w.reshape(F, -1).T, gy2, gcol)  # (C*K*K, F) @ (F, N*OH*OW)
                gcol = gcol.reshape(C, K, K, N, OH, OW)  # (C, K, K, N, OH, OW)
                GX = cm.zeros_grid(xp, C, grid, w.dtype)
                images = cm.padded_images(xp, GX, grid, offset=1 - padding)

                def col2im(lo, hi):  # add each patch gradient back where it came from
                    for i in range(K):
                        for j in range(K):
                            rows = slice(i, i + stride * (OH - 1) + 1, stride)
                            columns = slice(j, j + stride * (OW - 1) + 1, stride)
                            images[lo:hi, :, rows, columns] += gcol[lo:hi, i, j]  # (c, N, OH, OW)

                cpu_threads.parallel_rows(xp, C, col2im)
                gx = cm.grid_view(cm.zero_pads(GX, grid), grid)
        gb = xp.einsum("fl->f", GY) if ctx.needs_input_grad[2] else None  # zeros add nothing
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0) -> Tensor:
    """``F.conv2d`` on the channel-major fast path: the same result (to rounding) as an
    NCHW view of a padded grid. Only geometries that ``supports`` accepts."""
    inputs, stride, padding, dilation = check_conv_args("conv2d", input, weight, bias, stride,
                                                        padding, 1, 1)
    K = inputs[1].shape[2]
    if not supports((K, inputs[1].shape[3]), stride, padding, dilation):
        raise ValueError(f"fast_conv.conv2d: no fast path for kernel {inputs[1].shape[2:]}, "
                         f"stride {stride}, padding {padding}; use F.conv2d")
    return GridConv2d.apply(*inputs, stride=stride[0], padding=padding[0])
