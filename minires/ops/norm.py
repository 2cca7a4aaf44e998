"""Batch normalisation (Ioffe & Szegedy, 2015) with its full backward pass.

In training mode each channel is normalised with the mean and variance of the current
batch, so every output depends on every input of its channel: the backward pass has
two extra terms (through the mean and through the variance) that a naive derivation
misses. A gradient check with a random upstream gradient catches that; an all-ones
one does not, because those two terms then cancel exactly.
"""

from __future__ import annotations

from ..autograd import Function
from ..backend import overridable
from ..tensors import Tensor, as_tensor
from .arguments import check_batch_statistics, check_channel_tensors


def channel_sum(xp, a, b=None):
    """Sum over every axis but the channel axis 1, of ``a`` or of ``a * b`` (without
    forming the product) -> (C,). einsum rather than ``a.sum(axis=(0, 2, 3))``: NumPy
    reduces over several non-adjacent axes about three times slower."""
    axes = "nc" + "hwdefg"[:a.ndim - 2]  # 'nchw' for images, 'nc' for (N, C)
    if b is None:
        return xp.einsum(f"{axes}->c", a)
    return xp.einsum(f"{axes},{axes}->c", a, b)


def update_running_stats(running_mean, running_var, mean, var, momentum, M) -> None:
    """``running = (1 - momentum) * running + momentum * batch``, in place, like PyTorch's
    buffers; the variance unbiased over the batch's ``M`` values per channel."""
    running_mean *= 1 - momentum
    running_mean += momentum * mean
    running_var *= 1 - momentum
    running_var += (momentum * M / (M - 1)) * var


def normalize(xp, xc, var, w, b, eps):
    """-> (y, xhat, scale) for the centred input ``xc`` and the variance ``var``
    (broadcastable like ``xc``): xhat = xc / sqrt(var + eps), y = w * xhat + b, and
    scale = w / sqrt(var + eps), the factor of the input gradient."""
    shape = var.shape  # (1, C, 1, 1) for images
    inv_std = 1 / xp.sqrt(var + eps)
    xhat = xc * inv_std
    scale = inv_std if w is None else w.reshape(shape) * inv_std
    y = xhat.copy() if w is None else xhat * w.reshape(shape)  # xhat itself is saved
    if b is not None:
        y += b.reshape(shape)
    return y, xhat, scale


@overridable
def batch_norm_backward(xp, gy, xhat, scale, training):
    """-> (gx, gw, gb). ``scale`` is w / sqrt(var + eps) (w = 1 without weight),
    broadcastable like ``xhat``; gw and gb keep the broadcastable shape of ``scale``."""
    shape = scale.shape  # (1, C, 1, 1) for images
    gb = channel_sum(xp, gy).reshape(shape)
    gw = channel_sum(xp, gy, xhat).reshape(shape)
    if training:
        # gx = scale * (gy - gb / M - xhat * gw / M)
        M = gy.size // gb.size  # values per channel
        gx = xhat * (gw / M)
        gx += gb / M
        xp.subtract(gy, gx, out=gx)
        gx *= scale
    else:  # running statistics are constants
        gx = gy * scale
    return gx, gw, gb


class BatchNorm(Function):
    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, *, training, momentum, eps):
        # w, b: (C,) or None (no affine); running_mean, running_var: (C,) or None (not
        # tracked), read in eval mode and updated in place in training mode
        xp = ctx.xp
        shape = (1, -1) + (1,) * (x.ndim - 2)  # (1, C, 1, 1) for images
        if training:
            M = x.size // x.shape[1]  # values per channel
            mean = (channel_sum(xp, x) / M).reshape(shape)
            xc = x - mean
            var = (channel_sum(xp, xc, xc) / M).reshape(shape)
            if running_mean is not None:
                ctx.mark_dirty(running_mean, running_var)
                update_running_stats(running_mean, running_var, mean.reshape(-1),
                                     var.reshape(-1), momentum, M)
        else:
            xc = x - running_mean.reshape(shape)
            var = running_var.reshape(shape)
        y, xhat, scale = normalize(xp, xc, var, w, b, eps)
        ctx.save_for_backward(xhat, scale)
        ctx.training, ctx.param_shape = training, (x.shape[1],)
        return y

    @staticmethod
    def backward(ctx, gy):
        # xhat = (x - mean) / sqrt(var + eps),  y = w * xhat + b, over M values per channel
        #   gb = sum gy,  gw = sum gy * xhat
        #   training: gx = w / sqrt(var + eps) * (gy - gb / M - xhat * gw / M)
        #   eval:     gx = w / sqrt(var + eps) * gy
        xhat, scale = ctx.saved_tensors
        gx, gw, gb = batch_norm_backward(ctx.xp, gy, xhat, scale, ctx.training)
        gw = gw.reshape(ctx.param_shape) if ctx.needs_input_grad[1] else None
        gb = gb.reshape(ctx.param_shape) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None  # the running statistics get no gradient


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5) -> Tensor:
    """Normalise each channel of an (N, C) or (N, C, ...) input, like
    ``torch.nn.functional.batch_norm``: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    ``training=True`` uses the batch's mean and (biased) variance per channel and updates
    ``running_mean`` and ``running_var`` (tensors (C,), or None) in place:
    ``running = (1 - momentum) * running + momentum * batch``, with the unbiased batch
    variance, as PyTorch. ``training=False`` normalises with the running statistics.
    ``weight`` and ``bias``: (C,) or None.
    """
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input of shape (N, C) or (N, C, ...), got "
                         f"shape {x.shape}")
    check_channel_tensors("batch_norm", x, running_mean=running_mean,
                          running_var=running_var, weight=weight, bias=bias)
    check_batch_statistics("batch_norm", x, running_mean, running_var, training)
    return BatchNorm.apply(x, weight, bias, running_mean, running_var, training=training,
                           momentum=momentum, eps=eps)

