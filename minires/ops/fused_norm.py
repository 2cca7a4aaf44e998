"""BatchNorm, an optional residual add and an optional ReLU as ONE op, on padded grids.

A ResNet block ends in relu(bn(conv(x)) + shortcut); each of those steps is an op of its
own on the plain path, and each reads and writes the whole activation, forward and
backward. Fused, the forward pass is two sums per channel and a few whole-array passes
on the grid (``channel_major``), the backward pass the same, and only two arrays are
kept for backward: x-hat (BatchNorm's normalised input) and the output (whose sign is
the ReLU mask). The mathematics is ``norm.py``'s and ``activation.py``'s:

    xhat = (x - mean) / sqrt(var + eps),   y = relu(w * xhat + b + residual)

The grid's zero positions take part in every whole-array pass. They add nothing to the
sums (they are zero), and ``zero_pads`` sets them back to zero in every grid the op
returns or sums over, so each result is again a valid padded input for a convolution.
"""

from __future__ import annotations

from .. import backend
from ..tensor import Function, Tensor, as_tensor
from . import channel_major as cm


def _add_nchw(xp, G, grid: cm.Grid, r) -> None:
    """G += r for an (N, C, H, W) array ``r``: the whole grid when ``r`` is a grid of the
    same shape (its zeros stay zeros), else through the pixel view."""
    found = cm.find_grid(r)
    if found is not None and found[1] == grid:
        G += found[0]
    else:
        pixels = cm.pixels(G, grid)
        pixels += r.transpose(1, 0, 2, 3)  # (C, N, H, W)


class BatchNormAct(Function):
    @staticmethod
    def forward(ctx, x, w, b, *residual, running_mean, running_var, training, momentum, eps,
                relu):
        xp = ctx.xp
        X, grid = cm.as_grid(xp, x)
        C, M = X.shape[0], grid.N * grid.H * grid.W  # M values per channel
        xhat = cm.new_grid(xp, C, grid, X.dtype)
        if training:
            mean = xp.einsum("cl->c", X) / M  # the zeros between pixels add nothing
            xp.subtract(X, mean[:, None], out=xhat)
            cm.zero_pads(xhat, grid)
            var = xp.einsum("cl,cl->c", xhat, xhat) / M
            if running_mean is not None:  # updated in place, like PyTorch's buffers
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += (momentum * M / (M - 1)) * var  # unbiased
        else:
            xp.subtract(X, running_mean[:, None], out=xhat)
            cm.zero_pads(xhat, grid)
            var = running_var
        inv_std = 1 / xp.sqrt(var + eps)
        xhat *= inv_std[:, None]
        y = cm.new_grid(xp, C, grid, X.dtype)
        xp.multiply(xhat, w[:, None], out=y)
        y += b[:, None]
        if residual:
            _add_nchw(xp, y, grid, residual[0])
        if relu:
            xp.maximum(y, 0, out=y)
        cm.zero_pads(y, grid)
        ctx.save_for_backward(xhat, y if relu else None, w * inv_std)  # y: the ReLU mask
        ctx.grid, ctx.training, ctx.relu = grid, training, relu
        ctx.has_residual = bool(residual)
        return cm.grid_view(y, grid)

    @staticmethod
    def backward(ctx, gy):
        # y = relu(z), z = w * xhat + b + r, over M values per channel
        #   gz = gy where y > 0 (else 0),  gr = gz,  gb = sum gz,  gw = sum gz * xhat
        #   training: gx = w / sqrt(var + eps) * (gz - gb / M - xhat * gw / M)
        #   eval:     gx = w / sqrt(var + eps) * gz
        xhat, y, scale = ctx.saved_tensors
        xp, grid = ctx.xp, ctx.grid
        C, M = xhat.shape[0], grid.N * grid.H * grid.W
        if ctx.relu:
            gz = cm.new_grid(xp, C, grid, xhat.dtype)
            found = cm.find_grid(gy)
            if found is not None:
                xp.multiply(found[0], y > 0, out=gz)  # y's zeros keep gz's zeros
            else:
                xp.multiply(gy.transpose(1, 0, 2, 3), cm.pixels(y, grid) > 0,
                            out=cm.pixels(gz, grid))  # (C, N, H, W)
                cm.zero_pads(gz, grid)
        else:
            gz, _ = cm.as_grid(xp, gy)
        gb = xp.einsum("cl->c", gz)
        gw = xp.einsum("cl,cl->c", gz, xhat)
        gx = cm.new_grid(xp, C, grid, xhat.dtype)
        if ctx.training:
            xp.multiply(xhat, (gw / M)[:, None], out=gx)
            gx += (gb / M)[:, None]
            xp.subtract(gz, gx, out=gx)
            gx *= scale[:, None]
            cm.zero_pads(gx, grid)
        else:
            xp.multiply(gz, scale[:, None], out=gx)
        gx = cm.grid_view(gx, grid)
        if ctx.has_residual:
            return gx, gw, gb, cm.grid_view(gz, grid)
        return gx, gw, gb


def batch_norm_act(input, running_mean, running_var, weight=None, bias=None, training=False,
                   momentum=0.1, eps=1e-5, residual=None, relu=True) -> Tensor:
    """``relu(F.batch_norm(input, ...) + residual)`` as one op on the fast path, for an
    (N, C, H, W) input; ``residual`` (same shape) and the ReLU are optional. The result
    is the NCHW view of a padded grid."""
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"batch_norm_act: expected a 4-D input (N, C, H, W), got shape "
                         f"{x.shape}")
    C = x.shape[1]
    xp = backend.array_module(x.data)
    w = as_tensor(weight) if weight is not None else Tensor(xp.ones(C, dtype=x.dtype))
    b = as_tensor(bias) if bias is not None else Tensor(xp.zeros(C, dtype=x.dtype))
    stats = []
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", w), ("bias", b)):
        if t is not None and (tuple(t.shape) != (C,) or t.dtype != x.dtype):
            raise ValueError(f"batch_norm_act: {name} has shape {tuple(t.shape)} and dtype "
                             f"{t.dtype}, expected ({C},) and {x.dtype} for the input of "
                             f"shape {x.shape}")
        stats.append(t.data if isinstance(t, Tensor) else t)
    if training and x.numel() // C <= 1:
        raise ValueError(f"batch_norm_act: expected more than 1 value per channel when "
                         f"training, got input of shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("batch_norm_act: running_mean and running_var are needed when "
                         "training=False")
    inputs = [x, w, b]
    if residual is not None:
        r = as_tensor(residual)
        if r.shape != x.shape or r.dtype != x.dtype:
            raise ValueError(f"batch_norm_act: residual of shape {r.shape} and dtype "
                             f"{r.dtype} does not match the input's {x.shape}, {x.dtype}")
        inputs.append(r)
    return BatchNormAct.apply(*inputs, running_mean=stats[0], running_var=stats[1],
                              training=training, momentum=momentum, eps=eps, relu=relu)
