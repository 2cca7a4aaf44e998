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

from .. import cpu_threads
from ..autograd import Function
from ..tensors import Tensor, as_tensor
from . import channel_major as cm
from .arguments import check_batch_statistics, check_channel_tensors
from .norm import update_running_stats


def _add_nchw(xp, G, grid: cm.Grid, r, lo: int, hi: int) -> None:
    """G += channels lo..hi of the (N, C, H, W) array ``r``, for the grid rows G of those
    channels: whole rows when ``r`` is a grid of the same shape (its zeros stay zeros),
    else through the pixel view."""
    found = cm.find_grid(r)
    if found is not None and found[1] == grid:
        G += found[0][lo:hi]
    else:
        pixels = cm.pixels(G, grid)
        pixels += r.transpose(1, 0, 2, 3)[lo:hi]  # (c, N, H, W)


class BatchNormAct(Function):
    # Every channel is normalised on its own, so both passes run channel range by channel
    # range, one range per CPU thread (cpu_threads.parallel_rows).

    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, residual, *, training, momentum, eps,
                relu):
        # w, b, residual: or None; running_mean, running_var: (C,) or None, read in eval
        # mode and updated in place in training mode
        xp = ctx.xp
        X, grid = cm.as_grid(xp, x)
        C, M = X.shape[0], grid.N * grid.H * grid.W  # M values per channel
        xhat, y = cm.new_grid(xp, C, grid, X.dtype), cm.new_grid(xp, C, grid, X.dtype)
        mean, var = xp.empty(C, dtype=X.dtype), xp.empty(C, dtype=X.dtype)

        def channels(lo, hi):
            xh, out = xhat[lo:hi], y[lo:hi]  # (c, L) rows of the grids
            if training:
                mean[lo:hi] = xp.einsum("cl->c", X[lo:hi]) / M  # the zeros add nothing
            else:
                mean[lo:hi] = running_mean[lo:hi]
            xp.subtract(X[lo:hi], mean[lo:hi, None], out=xh)
            cm.zero_pads(xh, grid)
            if training:
                var[lo:hi] = xp.einsum("cl,cl->c", xh, xh) / M
            else:
                var[lo:hi] = running_var[lo:hi]
            xh *= (1 / xp.sqrt(var[lo:hi] + eps))[:, None]
            if w is None:
                out[...] = xh
            else:
                xp.multiply(xh, w[lo:hi, None], out=out)
            if b is not None:
                out += b[lo:hi, None]
            if residual is not None:
                _add_nchw(xp, out, grid, residual, lo, hi)
            if relu:
                xp.maximum(out, 0, out=out)
            cm.zero_pads(out, grid)

        cpu_threads.parallel_rows(xp, C, channels)
        if training and running_mean is not None:
            ctx.mark_dirty(running_mean, running_var)
            update_running_stats(running_mean, running_var, mean, var, momentum, M)
        scale = (1 if w is None else w) / xp.sqrt(var + eps)  # (C,)
        ctx.save_for_backward(xhat, y if relu else None, scale)  # y: the ReLU's mask
        ctx.grid, ctx.training, ctx.relu = grid, training, relu
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
        found = cm.find_grid(gy)
        if ctx.relu:
            gz = cm.new_grid(xp, C, grid, xhat.dtype)
        else:  # gz is gy itself, on a grid
            gz, _ = found if found is not None else cm.as_grid(xp, gy)
        gx = cm.new_grid(xp, C, grid, xhat.dtype)
        gw, gb = xp.empty(C, dtype=xhat.dtype), xp.empty(C, dtype=xhat.dtype)

        def channels(lo, hi):
            g, xh, out = gz[lo:hi], xhat[lo:hi], gx[lo:hi]  # (c, L) rows of the grids
            if ctx.relu and found is not None:
                xp.multiply(found[0][lo:hi], y[lo:hi] > 0, out=g)  # y's zeros keep g's
            elif ctx.relu:
                gy_rows = gy.transpose(1, 0, 2, 3)[lo:hi]  # (c, N, H, W)
                xp.multiply(gy_rows, cm.pixels(y[lo:hi], grid) > 0, out=cm.pixels(g, grid))
                cm.zero_pads(g, grid)
            gb[lo:hi] = xp.einsum("cl->c", g)
            gw[lo:hi] = xp.einsum("cl,cl->c", g, xh)
            if ctx.training:
                xp.multiply(xh, (gw[lo:hi] / M)[:, None], out=out)
                out += (gb[lo:hi] / M)[:, None]
                xp.subtract(g, out, out=out)
                out *= scale[lo:hi, None]
                cm.zero_pads(out, grid)
            else:
                xp.multiply(g, scale[lo:hi, None], out=out)

        cpu_threads.parallel_rows(xp, C, channels)
        needs = ctx.needs_input_grad
        return (cm.grid_view(gx, grid), gw if needs[1] else None, gb if needs[2] else None,
                None, None, cm.grid_view(gz, grid) if needs[5] else None)


def batch_norm_act(input, running_mean, running_var, weight=None, bias=None, training=False,
                   momentum=0.1, eps=1e-5, residual=None, relu=True) -> Tensor:
    """``relu(F.batch_norm(input, ...) + residual)`` as one op on the fast path, for an
    (N, C, H, W) input; ``residual`` (same shape) and the ReLU are optional. The result
    is the NCHW view of a padded grid."""
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"batch_norm_act: expected a 4-D input (N, C, H, W), got shape "
                         f"{x.shape}")
    check_channel_tensors("batch_norm_act", x, running_mean=running_mean,
                          running_var=running_var, weight=weight, bias=bias)
    check_batch_statistics("batch_norm_act", x, running_mean, running_var, training)
    if residual is not None:
        residual = as_tensor(residual)
        if residual.shape != x.shape or residual.dtype != x.dtype:
            raise ValueError(f"batch_norm_act: residual of shape {residual.shape} and dtype "
                             f"{residual.dtype} does not match the input's {x.shape}, {x.dtype}")
    return BatchNormAct.apply(x, weight, bias, running_mean, running_var, residual,
                              training=training, momentum=momentum, eps=eps, relu=relu)
