"""2-D convolution as one matrix multiply: im2col, GEMM, col2im.

im2col copies every KHxKW patch of the (padded) input into one row of a matrix, so
the convolution becomes ``patches @ w.T``: one large matrix multiply, which BLAS (or
cuBLAS) runs near peak speed. The patches are read through a strided *view* of the
input, so building the matrix is a single copy with no Python loop over pixels.
The backward pass is two more multiplies and col2im, which adds each patch gradient
back to where the patch came from. Every multiply goes through ``backend.matmul`` so
that ``mr.set_float32_matmul_precision('high')`` (TF32) reaches it.
"""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..backend import overridable
from ..tensors import Tensor, as_tensor


def pair(value, name: str, op: str) -> tuple:
    """An int or a pair of ints -> a pair of ints."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int)
                                                                    for v in value):
        return tuple(value)
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@overridable
def im2col(xp, x, KH, KW, stride, padding, dilation=(1, 1)):
    """(N, C, H, W) -> patch matrix (C*KH*KW, N*OH*OW), one column per output pixel.

    Rows are ordered (c, i, j) to match ``w.reshape(F, C*KH*KW)``; columns (n, oh, ow)
    so the innermost copy runs along a row of the image, which keeps the copy fast.
    """
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
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

    Overlapping patches add up. The loop runs over the KH*KW kernel offsets only; each
    step adds one strided slab covering every image, channel and output pixel.
    """
    N, C, H, W = x_shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    cols = col.reshape(C, KH, KW, N, OH, OW)  # (C, KH, KW, N, OH, OW)
    # accumulate channel-major like the columns, so each addition reads one contiguous slab
    gx = xp.zeros((C, N, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        for j in range(KW):
            rows = slice(i * DH, i * DH + SH * OH, SH)
            columns = slice(j * DW, j * DW + SW * OW, SW)
            gx[:, :, rows, columns] += cols[:, i, j]  # (C, N, OH, OW)
    return gx[:, :, PH:PH + H, PW:PW + W].transpose(1, 0, 2, 3)  # (N, C, H, W)


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, *, stride, padding, dilation):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        OH = output_size(H, KH, stride[0], padding[0], dilation[0])
        OW = output_size(W, KW, stride[1], padding[1], dilation[1])
        col = im2col(ctx.xp, x, KH, KW, stride, padding, dilation)  # (C*KH*KW, N*OH*OW)
        y = backend.matmul(w.reshape(F, C * KH * KW), col)  # (F, N*OH*OW)
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
            gx = backend.matmul(w_flipped, gy_col)  # (C, N*H*W)
            gx = gx.reshape(C, N, H, W).transpose(1, 0, 2, 3)  # (N, C, H, W)
        elif ctx.needs_input_grad[0]:
            gcol = backend.matmul(w.reshape(F, -1).T, gy2)  # (C*KH*KW, N*OH*OW)
            gx = col2im(ctx.xp, gcol, ctx.x_shape, KH, KW, *ctx.geometry)
        if ctx.needs_input_grad[1]:
            # computed as (col @ gy2^T)^T: the same numbers, but OpenBLAS runs this
            # orientation (tall output, short inner loop) up to 100x faster for small F
            gw = backend.matmul(col, gy2.T).T.reshape(w.shape)  # (F, C, KH, KW)
        gb = gy2.sum(axis=1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation, as in every framework) of (N, C, H, W) input
    with (F, C, KH, KW) weight, like ``torch.nn.functional.conv2d``."""
    inputs, stride, padding, dilation = check_conv_args("conv2d", input, weight, bias, stride,
                                                        padding, dilation, groups)
    return Conv2d.apply(*inputs, stride=stride, padding=padding, dilation=dilation)


def check_conv_args(op, input, weight, bias, stride, padding, dilation, groups):
    """-> ((x, w, b), stride, padding, dilation), b None without bias, or a clear error
    naming ``op``."""
    x, w = as_tensor(input), as_tensor(weight)
    stride, padding = pair(stride, "stride", op), pair(padding, "padding", op)
    dilation = pair(dilation, "dilation", op)
    if groups != 1:
        raise ValueError(f"{op}: only groups=1 is supported, got groups={groups}")
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight (F, C, KH, KW), got shape {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: input of shape {x.shape} has {x.shape[1]} channels but "
                         f"weight of shape {w.shape} expects {w.shape[1]}")
    if min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise ValueError(f"{op}: need stride >= 1, padding >= 0 and dilation >= 1, got "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and weight dtype {w.dtype} differ")
    (_, _, H, W), (_, _, KH, KW) = x.shape, w.shape
    if output_size(H, KH, stride[0], padding[0], dilation[0]) < 1 or \
            output_size(W, KW, stride[1], padding[1], dilation[1]) < 1:
        raise ValueError(f"{op}: kernel ({KH}, {KW}) is larger than the padded input "
                         f"({H + 2 * padding[0]}, {W + 2 * padding[1]}) for input shape "
                         f"{x.shape}")
    b = None if bias is None else as_tensor(bias)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: bias of shape {b.shape} does not match the "
                         f"{w.shape[0]} output channels of weight {w.shape}")
    return (x, w, b), stride, padding, dilation
