"""2-D convolution as one matrix multiply: im2col, GEMM, col2im.

im2col copies every KHxKW patch of the (padded) input into one row of a matrix, so
the convolution becomes ``patches @ w.T``: one large matrix multiply, which BLAS (or
cuBLAS) runs near peak speed. The patches are read through a strided *view* of the
input, so building the matrix is a single copy with no Python loop over pixels.
The backward pass is two more multiplies and col2im, which adds each patch gradient
back to where the patch came from. Every multiply goes through ``precision.matmul`` so
that ``mr.set_float32_matmul_precision('high')`` (TF32) reaches it.
"""

from __future__ import annotations

from .. import backend, precision
from ..autograd import Function
from ..backend import overridable
from ..tensors import Tensor
from .arguments import check_conv_args
from .geometry import output_shape, scatter_windows


@overridable
def im2col(xp, x, KH, KW, stride, padding, dilation=(1, 1)):
    """(N, C, H, W) -> patch matrix (C*KH*KW, N*OH*OW), one column per output pixel.

    Rows are ordered (c, i, j) to match ``w.reshape(F, C*KH*KW)``; columns (n, oh, ow)
    so the innermost copy runs along a row of the image, which keeps the copy fast.
    """
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_shape(H, W, (KH, KW), stride, padding, dilation)
    if PH or PW:
        x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    sN, sC, sH, sW = x.strides
    # a view, no copy: patches[c, i, j, n, oh, ow] = x[n, c, oh*SH + i*DH, ow*SW + j*DW]
    patches = backend.as_strided(
        xp, x, (C, KH, KW, N, OH, OW), (sC, sH * DH, sW * DW, sN, sH * SH, sW * SW)
    )
    return patches.reshape(C * KH * KW, N * OH * OW)  # the one copy


@overridable
def col2im(xp, col, x_shape, KH, KW, stride, padding, dilation=(1, 1)):
    """Patch-matrix gradient (C*KH*KW, N*OH*OW) -> input gradient (N, C, H, W).

    Overlapping patches add up: row (c, i, j) of the matrix holds what kernel offset
    (i, j) of every window read from channel c, which ``scatter_windows`` adds back.
    """
    N, C, H, W = x_shape
    OH, OW = output_shape(H, W, (KH, KW), stride, padding, dilation)
    cols = col.reshape(C, KH, KW, N, OH, OW)  # (C, KH, KW, N, OH, OW)
    # accumulate channel-major like the columns, so each addition reads one contiguous slab
    gx = scatter_windows(xp, (C, N, H, W), KH, KW, stride, padding,
                         lambda i, j: cols[:, i, j], dilation)  # (C, N, H, W)
    return gx.transpose(1, 0, 2, 3)  # (N, C, H, W)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, *, stride, padding, dilation):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        OH, OW = output_shape(H, W, (KH, KW), stride, padding, dilation)
        col = im2col(ctx.xp, x, KH, KW, stride, padding, dilation)  # (C*KH*KW, N*OH*OW)
        y = precision.matmul(w.reshape(F, C * KH * KW), col)  # (F, N*OH*OW)
        if b is not None:
            y += b[:, None]
        ctx.save_for_backward(col, w)
        ctx.x_shape, ctx.geometry = x.shape, (stride, padding, dilation)
        return y.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)  # (N, F, OH, OW)

    @staticmethod
    def backward(ctx, gy):
        # y = w @ col + b  =>  gw = gy @ col^T,  gcol = w^T @ gy,  gb = sum of gy,
        #                      gx = col2im(gcol)  (for stride 1: a convolution, below)
        col, w = ctx.saved_tensors
        F, C, KH, KW = w.shape
        N, _, H, W = ctx.x_shape
        stride, (PH, PW), dilation = ctx.geometry
        gy2 = gy.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N*OH*OW)
        gx = gw = None
        if ctx.needs_input_grad[0] and stride == dilation == (1, 1) and PH < KH and PW < KW:
            # With stride 1 the input gradient is itself a convolution: of gy, padded by
            # K-1-P, with the kernel flipped and its channel axes swapped,
            #   gx[n, c, h, w] = sum_{f,i,j} gy[n, f, h+P-i, w+P-j] * w[f, c, i, j].
            # im2col + one matrix multiply: faster than col2im's KH*KW strided additions.
            w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, KH, KW)
            w_flipped = ctx.xp.ascontiguousarray(w_flipped).reshape(C, F * KH * KW)
            gy_col = im2col(ctx.xp, gy, KH, KW, (1, 1), (KH - 1 - PH, KW - 1 - PW))
            gx = precision.matmul(w_flipped, gy_col)  # (C, N*H*W)
            gx = gx.reshape(C, N, H, W).transpose(1, 0, 2, 3)  # (N, C, H, W)
        elif ctx.needs_input_grad[0]:
            gcol = precision.matmul(w.reshape(F, -1).T, gy2)  # (C*KH*KW, N*OH*OW)
            gx = col2im(ctx.xp, gcol, ctx.x_shape, KH, KW, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            # computed as (col @ gy2^T)^T: the same numbers, but OpenBLAS runs this
            # orientation (tall output, short inner loop) up to 100x faster for small F
            gw = precision.matmul(col, gy2.T).T.reshape(w.shape)  # (F, C, KH, KW)
        gb = gy2.sum(axis=1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation, as in every framework) of an (N, C, H, W)
    input with an (F, C, KH, KW) weight -> (N, F, OH, OW), like
    ``torch.nn.functional.conv2d``.

    ``bias``: (F,) or None. ``stride``, ``padding`` (zeros on every side) and
    ``dilation`` (the spacing of the kernel's taps) are ints or (height, width) pairs;
    ``OH = (H + 2 * padding - dilation * (KH - 1) - 1) // stride + 1``, likewise ``OW``.
    Only ``groups=1`` is supported.
    """
    inputs, stride, padding, dilation = check_conv_args("conv2d", input, weight, bias, stride,
                                                        padding, dilation, groups)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation)

