"""2-D convolution on channel-major padded grids: the CPU fast path of ``nn.Conv2d``.

The same mathematics as ``conv.py`` (im2col, one matrix multiply, and two more for the
gradients), on the layout of ``channel_major``: input and output are (C, L) grids whose
pixels the user sees as NCHW views. Two ways to build the im2col matrix:

* "same" convolutions (stride 1, a KxK kernel with padding (K-1)/2: 3x3 with padding 1,
  1x1 without): every kernel offset is a fixed flat shift on the grid, so each of the
  K*K row blocks of the matrix is a contiguous block of every channel, all K*K of them
  one strided view, and the matrix multiply writes its result straight onto the output
  grid. The input gradient is the same kind of convolution (of the output gradient,
  with the kernel flipped), so it takes the same path. A 1x1 convolution needs no copy
  at all: the grid is its matrix.
* any other stride or kernel with padding 0 or 1 (the stride-2 convolutions of a
  ResNet): a strided view of the grid's padded images gives the matrix's columns, image
  by image, and their gradient is added back (col2im) through the same view.

Neither path builds its whole im2col matrix (K*K times the input: most of the plain
path's time and memory). Both build it a tile of columns at a time, in a small scratch
buffer (``channel_major.workspace``), and multiply each tile while it is still in the
CPU's cache (``cpu_threads.tiles``); each CPU thread takes its own range of columns
(or images, or channels). Backward builds the tiles again from the saved input grid.
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


def _sum_of_products(xp, n: int, products):
    """The sum of every array that ``products(lo, hi)`` yields (the partial products of
    a weight gradient, tile by tile), range(n) cut into one range per CPU thread: each
    thread adds up its own, then the threads' sums are added in a fixed order, so the
    result does not depend on which thread finished first."""
    partial = {}

    def part(lo, hi):
        total = None
        for product in products(lo, hi):
            total = product if total is None else total + product
        partial[lo] = total

    cpu_threads.parallel_rows(xp, n, part)
    return sum(partial[lo] for lo in sorted(partial))


# --------------------------------------------------------------- same convolutions


def im2col_tiles(xp, G, grid: cm.Grid, K: int, lo: int, hi: int):
    """Columns lo..hi of the (C*K*K, span) im2col matrix of the pixels' block of grid
    ``G``, one tile at a time (``cpu_threads.tiles``): yields ``(a, b, col)``, ``col``
    the (C*K*K, b - a) block of columns a..b in this thread's scratch buffer, valid
    until the next tile. For K == 1 the grid's own block (no copy)."""
    start, C = grid.first, G.shape[0]
    if K == 1:
        yield lo, hi, G[:, start + lo:start + hi]  # (C, hi - lo), a view
        return
    P = (K - 1) // 2
    sC, s1 = G.strides
    for a, b in cpu_threads.tiles(xp, lo, hi, C * K * K * G.itemsize):
        # row (c, i, j) of the tile is the block of channel c shifted by
        # grid.shift(i - P, j - P) = (i - P) * row + (j - P): ONE strided view, whose rows
        # overlap, copied in one call (one call instead of K*K: fewer hand-overs of the GIL
        # between the CPU threads, which each build their own tiles)
        first = start + a + grid.shift(-P, -P)
        blocks = backend.as_strided(xp, G[:, first:], (C, K, K, b - a),
                                    (sC, grid.row * s1, s1, s1))  # (C, K, K, b - a)
        col = cm.workspace(xp, (C, K, K, b - a), G.dtype)
        col[...] = blocks
        yield a, b, col.reshape(C * K * K, b - a)  # (C*K*K, b - a)


def _conv_same(xp, G, grid: cm.Grid, w2, K: int):
    """y = w2 @ im2col(G) on the block of pixels, onto a new grid of the same shape:
    the block's columns cut into one range per CPU thread, each range tile by tile."""
    start = grid.first
    Y = cm.new_grid(xp, w2.shape[0], grid, G.dtype)

    def part(lo, hi):
        for a, b, col in im2col_tiles(xp, G, grid, K, lo, hi):
            _matmul_part(w2, col, Y[:, start + a:start + b])

    cpu_threads.parallel_rows(xp, grid.span, part)
    return cm.zero_pads(Y, grid)  # the block also covered the zero positions


def _weight_grad_same(xp, G, grid: cm.Grid, gy_block, K: int):
    """col @ gy_block^T, (C*K*K, F), with col = im2col(G), tile by tile."""
    return _sum_of_products(xp, grid.span, lambda lo, hi: (
        precision.matmul(col, gy_block[:, a:b].T)  # (C*K*K, F)
        for a, b, col in im2col_tiles(xp, G, grid, K, lo, hi)))


# --------------------------------------------------------------- strided convolutions


def _patches(xp, G, grid: cm.Grid, K: int, stride: int, padding: int, OH: int, OW: int):
    """(C, K, K, N, OH, OW) view: patches[c, i, j, n, oh, ow] is input (n, c) at
    padded position (oh*stride + i, ow*stride + j), padding 0 or 1."""
    images = cm.padded_images(xp, G, grid, offset=1 - padding)  # (C, N, H', W')
    sC, sN, sH, sW = images.strides
    return backend.as_strided(xp, images, (G.shape[0], K, K, grid.N, OH, OW),
                              (sC, sH, sW, sN, sH * stride, sW * stride))


def strided_tiles(xp, G, grid: cm.Grid, K: int, stride: int, padding: int, OH: int,
                  OW: int, lo: int, hi: int):
    """The columns of images lo..hi of the (C*K*K, N*OH*OW) im2col matrix, a whole number
    of images per tile: yields ``(a, b, col)``, ``col`` the (C*K*K, (b-a)*OH*OW) columns of
    images a..b, one strided copy in this thread's scratch buffer, valid until the next tile."""
    C = G.shape[0]
    patches = _patches(xp, G, grid, K, stride, padding, OH, OW)  # (C, K, K, N, OH, OW)
    for a, b in cpu_threads.tiles(xp, lo, hi, C * K * K * OH * OW * G.itemsize):
        col = cm.workspace(xp, (C, K, K, b - a, OH, OW), G.dtype)
        col[...] = patches[:, :, :, a:b]
        yield a, b, col.reshape(C * K * K, (b - a) * OH * OW)  # (C*K*K, (b-a)*OH*OW)


def _conv_strided(xp, G, grid: cm.Grid, w2, K: int, stride: int, padding: int, out: cm.Grid):
    """y = w2 @ im2col(G) onto a new grid of shape ``out``: one range of images per CPU
    thread, each range tile by tile."""
    F, N, OH, OW = w2.shape[0], out.N, out.H, out.W
    Y = cm.new_grid(xp, F, out, G.dtype)
    pixels = cm.pixels(Y, out)  # (F, N, OH, OW)

    def part(lo, hi):
        for a, b, col in strided_tiles(xp, G, grid, K, stride, padding, OH, OW, lo, hi):
            y = precision.matmul(w2, col)  # (F, (b-a)*OH*OW)
            pixels[:, a:b] = y.reshape(F, b - a, OH, OW)  # (F, b-a, OH, OW)

    cpu_threads.parallel_rows(xp, N, part)
    return cm.zero_pads(Y, out)


def _weight_grad_strided(xp, G, grid: cm.Grid, gy2, K: int, stride: int, padding: int,
                         out: cm.Grid):
    """col @ gy2^T, (C*K*K, F), with col = im2col(G) and gy2 the (F, N, OH, OW) output
    gradient, tile by tile."""
    F, OH, OW = gy2.shape[0], out.H, out.W
    return _sum_of_products(xp, out.N, lambda lo, hi: (
        # gy2 of images a..b as (F, (b-a)*OH*OW), a view; the product is (C*K*K, F)
        precision.matmul(col, gy2[:, a:b].reshape(F, (b - a) * OH * OW).T)
        for a, b, col in strided_tiles(xp, G, grid, K, stride, padding, OH, OW, lo, hi)))


def _input_grad_strided(xp, w, gy2, grid: cm.Grid, stride: int, padding: int, out: cm.Grid):
    """col2im(w^T @ gy2) onto a new grid of shape ``grid``: one range of channels per CPU
    thread (so that no two threads add into the same element), each tile by tile."""
    F, C, K, _ = w.shape
    OH, OW = out.H, out.W
    wT = w.reshape(F, C * K * K).T  # (C*K*K, F)
    GX = cm.zeros_grid(xp, C, grid, w.dtype)
    images = cm.padded_images(xp, GX, grid, offset=1 - padding)  # (C, N, H', W')

    def channels(lo, hi):
        for a, b in cpu_threads.tiles(xp, 0, out.N, (hi - lo) * K * K * OH * OW * w.itemsize):
            gcol = cm.workspace(xp, ((hi - lo) * K * K, (b - a) * OH * OW), w.dtype)
            gy_tile = gy2[:, a:b].reshape(F, (b - a) * OH * OW)  # (F, (b-a)*OH*OW), a view
            _matmul_part(wT[lo * K * K:hi * K * K], gy_tile, gcol)
            gcol = gcol.reshape(hi - lo, K, K, b - a, OH, OW)  # (c, K, K, b-a, OH, OW)
            for i in range(K):  # add each patch gradient back where it came from
                for j in range(K):
                    rows = slice(i, i + stride * (OH - 1) + 1, stride)
                    columns = slice(j, j + stride * (OW - 1) + 1, stride)
                    images[lo:hi, a:b, rows, columns] += gcol[:, i, j]  # (c, b-a, OH, OW)

    cpu_threads.parallel_rows(xp, C, channels)
    return cm.zero_pads(GX, grid)


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
            Y = _conv_strided(xp, G, grid, w2, K, stride, padding, out)
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
                gw = _weight_grad_same(xp, G, grid, gy_block, K)  # (C*K*K, F)
                gw = gw.T.reshape(w.shape)  # (F, C, K, K)
            if ctx.needs_input_grad[0]:
                w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, K, K)
                w_flipped = xp.ascontiguousarray(w_flipped).reshape(C, F * K * K)  # (C, F*K*K)
                gx = cm.grid_view(_conv_same(xp, GY, grid, w_flipped, K), grid)
        else:
            gy2 = xp.empty((F, out.N, out.H, out.W), dtype=gy.dtype)  # dense: fewer copies
            cm.copy_rows(xp, gy2, cm.pixels(GY, out))
            if ctx.needs_input_grad[1]:
                gw = _weight_grad_strided(xp, G, grid, gy2, K, stride, padding, out)
                gw = gw.T.reshape(w.shape)  # (F, C, K, K)
            if ctx.needs_input_grad[0]:
                gx = cm.grid_view(_input_grad_strided(xp, w, gy2, grid, stride, padding, out),
                                  grid)
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
