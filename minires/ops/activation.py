"""Nonlinearities, softmax and dropout."""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensors import Tensor, as_tensor
from .arguments import normalize_dim


class ReLU(Function):
    @staticmethod
    def forward(ctx, x):
        mask = x > 0
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, gy):
        # y = max(x, 0)  =>  gx = gy where x > 0, else 0
        (mask,) = ctx.saved_tensors
        return gy * mask


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, *, negative_slope):
        slope = ctx.xp.where(x > 0, x.dtype.type(1), x.dtype.type(negative_slope))
        ctx.save_for_backward(slope)
        return x * slope

    @staticmethod
    def backward(ctx, gy):
        # y = x if x > 0 else a * x  =>  gx = gy * (1 or a)
        (slope,) = ctx.saved_tensors
        return gy * slope


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        # exp of a negative number only, so large |x| never overflows
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = 1 / (1 + e^-x)  =>  gx = gy * y * (1 - y)
        (y,) = ctx.saved_tensors
        return gy * y * (1 - y)


class Tanh(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = tanh x  =>  gx = gy * (1 - y^2)
        (y,) = ctx.saved_tensors
        return gy * (1 - y * y)


def softmax_array(xp, x, axis):
    """Stable softmax on an array: subtracting the max changes nothing but avoids overflow."""
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_array(xp, x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, *, dim):
        y = softmax_array(ctx.xp, x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, gy):
        # y_i = e^x_i / sum_j e^x_j  =>  gx = y * (gy - sum_j gy_j y_j)
        (y,) = ctx.saved_tensors
        return y * (gy - (gy * y).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, *, dim):
        y = log_softmax_array(ctx.xp, x, dim)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, gy):
        # y_i = x_i - log sum_j e^x_j  =>  gx = gy - softmax(x) * sum_j gy_j
        (y,) = ctx.saved_tensors
        return gy - ctx.xp.exp(y) * gy.sum(axis=ctx.dim, keepdims=True)


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, *, p):
        # keep each element with probability 1-p and scale it by 1/(1-p), so the expected
        # value is unchanged and evaluation needs no rescaling ("inverted dropout")
        keep = backend.generator(ctx.xp).random(x.shape, dtype=x.dtype) >= p
        scale = x.dtype.type(0 if p == 1 else 1 / (1 - p))
        mask = keep * scale
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, gy):
        # y = x * mask / (1-p)  =>  gx = gy * mask / (1-p)
        (mask,) = ctx.saved_tensors
        return gy * mask


# --------------------------------------------------------------------------- wrappers


def relu(x) -> Tensor:
    """Element-wise ``max(x, 0)``; the gradient is 0 for x <= 0, as in PyTorch."""
    return ReLU.apply(x)


def leaky_relu(x, negative_slope: float = 0.01) -> Tensor:
    """Element-wise ``x`` for x > 0, ``negative_slope * x`` otherwise."""
    return LeakyReLU.apply(x, negative_slope=negative_slope)


def sigmoid(x) -> Tensor:
    """Element-wise ``1 / (1 + exp(-x))``, computed without overflow."""
    return Sigmoid.apply(x)


def tanh(x) -> Tensor:
    """Element-wise hyperbolic tangent."""
    return Tanh.apply(x)


def softmax(x, dim: int) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``: each slice becomes
    probabilities that sum to 1 (computed stably, the maximum subtracted first)."""
    x = as_tensor(x)
    return Softmax.apply(x, dim=normalize_dim(dim, x.ndim, "softmax"))


def log_softmax(x, dim: int) -> Tensor:
    """``log(softmax(x))`` along ``dim``, computed stably: ``x - max -
    log(sum(exp(x - max)))``; with ``nll_loss`` it makes ``cross_entropy``."""
    x = as_tensor(x)
    return LogSoftmax.apply(x, dim=normalize_dim(dim, x.ndim, "log_softmax"))


def dropout(x, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` during training and scale the others by
    ``1 / (1 - p)``, so the expected value is unchanged; identity in evaluation."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    x = as_tensor(x)
    if not training or p == 0:
        return x
    return Dropout.apply(x, p=p)
