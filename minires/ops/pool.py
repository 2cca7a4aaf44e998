"""Max and average pooling over strided window views (no loop over pixels)."""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..backend import overridable
from ..tensors import Tensor, as_tensor
from .arguments import check_pool_args
from .geometry import output_shape, pair, scatter_windows
from .reduce import mean


def _windows(xp, x, KH, KW, stride):
    """(N, C, H, W) -> view (N, C, OH, OW, KH, KW) of every pooling window, no copy."""
    N, C, H, W = x.shape
    SH, SW = stride
    OH, OW = output_shape(H, W, (KH, KW), stride, (0, 0))
    sN, sC, sH, sW = x.strides
    return backend.as_strided(xp, x, (N, C, OH, OW, KH, KW), (sN, sC, sH * SH, sW * SW, sH, sW))


@overridable
def max_pool2d_forward(xp, x, KH, KW, stride, padding):
    """-> (y, argmax): the max of each window and its flat offset i*KW + j in the window.

    A running maximum over the KH*KW kernel offsets, each offset one strided slab
    (N, C, OH, OW) of the input: a few whole-array operations per offset. (An argmax
    over a window axis of length KH*KW is about ten times slower in NumPy.) Ties go to
    the first offset, like numpy's argmax; a NaN wins and propagates.
    """
    N, C, H, W = x.shape
    (SH, SW), (PH, PW) = stride, padding
    if PH or PW:  # padding never wins a max, as in PyTorch
        x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=-xp.inf)
    OH, OW = output_shape(H, W, (KH, KW), stride, padding)
    y = argmax = None
    for i in range(KH):
        for j in range(KW):
            slab = x[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]  # (N, C, OH, OW) view
            if y is None:  # a copy: y is written below and must not alias the input
                y, argmax = slab.copy(), xp.zeros(slab.shape, dtype=xp.int64)
                continue
            slab = xp.ascontiguousarray(slab)  # whole-array comparisons run faster on it
            wins = slab > y
            wins |= (slab != slab) & (y == y)  # the first NaN wins (NaN != NaN)
            argmax += wins * (i * KW + j - argmax)  # becomes the offset where it wins
            xp.maximum(y, slab, out=y)
    return y, argmax  # (N, C, OH, OW) each


@overridable
def max_pool2d_backward(xp, gy, argmax, x_shape, KH, KW, stride, padding):
    """Route each window's gradient to the element that won the max."""
    return scatter_windows(xp, x_shape, KH, KW, stride, padding,
                           lambda i, j: gy * (argmax == i * KW + j))


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding):
        y, argmax = max_pool2d_forward(ctx.xp, x, *kernel_size, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.geometry = x.shape, (*kernel_size, stride, padding)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = max over window  =>  gx = gy at the argmax of each window, 0 elsewhere
        (argmax,) = ctx.saved_tensors
        return max_pool2d_backward(ctx.xp, gy, argmax, ctx.x_shape, *ctx.geometry)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, *, kernel_size, stride, padding):
        xp = ctx.xp
        KH, KW = kernel_size
        PH, PW = padding
        if PH or PW:  # zeros that count in the divisor (PyTorch's count_include_pad=True)
            x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
        ctx.x_shape = (x.shape[0], x.shape[1], x.shape[2] - 2 * PH, x.shape[3] - 2 * PW)
        ctx.geometry = (KH, KW, stride, padding)
        return _windows(xp, x, KH, KW, stride).mean(axis=(4, 5))  # (N, C, OH, OW)

    @staticmethod
    def backward(ctx, gy):
        # y = mean over window  =>  every element of a window gets gy / (KH*KW)
        KH, KW, stride, padding = ctx.geometry
        g = gy / (KH * KW)
        return scatter_windows(ctx.xp, ctx.x_shape, KH, KW, stride, padding, lambda i, j: g)


def max_pool2d(input, kernel_size, stride=None, padding=0) -> Tensor:
    """The maximum of each window of an (N, C, H, W) input -> (N, C, OH, OW).

    ``kernel_size``, ``stride`` (default: the kernel size) and ``padding`` are ints or pairs;
    padding never wins a maximum. The gradient goes to the maximum of each window (the
    first one where several tie).
    """
    x, args = check_pool_args("max_pool2d", input, kernel_size, stride, padding)
    return MaxPool2d.apply(x, **args)


def avg_pool2d(input, kernel_size, stride=None, padding=0) -> Tensor:
    """The mean of each window of an (N, C, H, W) input -> (N, C, OH, OW).

    ``kernel_size``, ``stride`` (default: the kernel size) and ``padding`` are ints or pairs;
    padded zeros count in the mean (PyTorch's ``count_include_pad=True``).
    """
    x, args = check_pool_args("avg_pool2d", input, kernel_size, stride, padding)
    return AvgPool2d.apply(x, **args)


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    """Average-pool an (N, C, H, W) input to (N, C, OH, OW) for ``output_size`` (OH, OW)
    (or an int for both); the ResNet head uses 1, global average pooling. Other sizes
    must divide H and W (the windows are then equal and do not overlap)."""
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected a 4-D input (N, C, H, W), got shape "
                         f"{x.shape}")
    OH, OW = pair(output_size, "output_size", "adaptive_avg_pool2d")
    H, W = x.shape[2:]
    if (OH, OW) == (1, 1):
        return mean(x, dim=(2, 3), keepdim=True)  # (N, C, 1, 1)
    if H % OH or W % OW:
        raise ValueError(f"adaptive_avg_pool2d: input size ({H}, {W}) must be divisible by "
                         f"output_size ({OH}, {OW})")
    return avg_pool2d(x, (H // OH, W // OW))
