"""SyncBatchNorm: batch normalisation over the global batch of all ranks.

With plain BatchNorm each rank normalises with the statistics of its own slice: with 2
ranks of 64 images the network trains on two batches of 64, not one of 128, and the
result differs from a single process (BatchNorm is the one layer whose output for an
image depends on the other images of the batch). SyncBatchNorm computes the mean and
variance of the whole global batch, so 2 ranks x 64 images equal 1 rank x 128 exactly.

Forward, per channel: each rank computes its count ``n_r``, mean ``m_r`` and sum of
squared deviations ``q_r = sum (x - m_r)^2``; one all-gather brings every rank's
triple, and each combines them (Chan et al.'s parallel variance, which avoids the
cancellation of ``E[x^2] - E[x]^2``):

    N = sum n_r,   mean = sum n_r m_r / N,   var = (sum q_r + sum n_r (m_r - mean)^2) / N

Backward: the input gradient of BatchNorm needs two sums over the batch, and with a
global batch they are global sums, so they are all-reduced (one call for both):

    gx = w / sqrt(var + eps) * (gy - sum(gy) / N - xhat * sum(gy * xhat) / N)

The gradients of ``w`` and ``b`` stay this rank's own sums: DistributedDataParallel
averages them over the ranks like every other parameter gradient.

In a world of one process (or before ``init_process_group``) the collectives are the
identity and SyncBatchNorm computes exactly what BatchNorm computes.
"""

from __future__ import annotations

from ..autograd import Function
from ..nn.module import Module
from ..nn.norm import _BatchNorm
from ..ops.arguments import check_channel_tensors
from ..ops.norm import batch_norm, channel_sum, normalize, update_running_stats
from ..tensors import Tensor, as_tensor
from . import group as _group


class SyncBatchNormFunction(Function):
    """BatchNorm's training-mode op over the global batch of all ranks (the math is in
    the module's docstring): one all-gather of the per-rank statistics in forward, one
    all-reduce of the two gradient sums in backward."""

    @staticmethod
    def forward(ctx, x, w, b, running_mean, running_var, *, momentum, eps, group):
        # w, b: (C,) or None (no affine); running_mean, running_var: (C,) or None,
        # updated in place with the global statistics
        xp = ctx.xp
        C = x.shape[1]
        shape = (1, -1) + (1,) * (x.ndim - 2)  # (1, C, 1, 1) for images
        n = x.size // C  # this rank's values per channel
        mean_r = channel_sum(xp, x) / max(n, 1)
        xc = x - mean_r.reshape(shape)
        q_r = channel_sum(xp, xc, xc)
        local = xp.concatenate([xp.full(1, n, dtype=x.dtype), mean_r, q_r])  # (2C + 1,)
        stats = group.all_gather(local)  # (R, 2C + 1)
        counts, means, qs = stats[:, :1], stats[:, 1:C + 1], stats[:, C + 1:]
        # N stays an array: reading it on the host would make the CPU wait for the GPU at
        # every layer; only a rank with at most one value of its own needs to look
        N = counts.sum()
        if n <= 1 and float(N) <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all "
                             f"ranks when training, got input of shape {x.shape} and "
                             f"{float(N):g} values in all")
        mean = (counts * means).sum(axis=0) / N  # (C,)
        var = (qs.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)) / N
        if running_mean is not None:  # updated in place, over the global batch
            ctx.mark_dirty(running_mean, running_var)
            update_running_stats(running_mean, running_var, mean, var, momentum, N)
        y, xhat, scale = normalize(xp, x - mean.reshape(shape), var.reshape(shape), w, b, eps)
        ctx.save_for_backward(xhat, scale)
        ctx.N, ctx.group, ctx.param_shape = N, group, (C,)
        return y

    @staticmethod
    def backward(ctx, gy):
        # over the N values per channel of ALL ranks (sums all-reduced):
        #   gx = w / sqrt(var + eps) * (gy - sum(gy) / N - xhat * sum(gy * xhat) / N)
        # gw = sum(gy * xhat), gb = sum(gy) over this rank only (DDP averages them)
        xp = ctx.xp
        xhat, scale = ctx.saved_tensors
        gb = channel_sum(xp, gy)
        gw = channel_sum(xp, gy, xhat)
        sums = ctx.group.all_reduce(xp.concatenate([gb, gw]), "sum")  # (2C,)
        C = gb.shape[0]
        shape = scale.shape  # (1, C, 1, 1)
        gb_all, gw_all = sums[:C].reshape(shape), sums[C:].reshape(shape)
        # the lesson of ops/norm.py's batch_norm_backward (which a course's student copy
        # leaves for the student to write), with the global sums
        gx = xhat * (gw_all / ctx.N)
        gx += gb_all / ctx.N
        xp.subtract(gy, gx, out=gx)
        gx *= scale
        gw = gw.reshape(ctx.param_shape) if ctx.needs_input_grad[1] else None
        gb = gb.reshape(ctx.param_shape) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None  # the running statistics get no gradient


def sync_batch_norm(input, running_mean, running_var, weight=None, bias=None,
                    momentum: float = 0.1, eps: float = 1e-5, process_group=None) -> Tensor:
    """Training-mode batch norm with the statistics of every rank's batch together.
    ``running_mean``/``running_var`` (tensors, or None) are updated in place with the
    global statistics, identically on every rank."""
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"sync_batch_norm: expected an input of shape (N, C) or (N, C, ...), "
                         f"got shape {x.shape}")
    check_channel_tensors("sync_batch_norm", x, running_mean=running_mean,
                          running_var=running_var, weight=weight, bias=bias)
    group = process_group or _group.default_group()
    return SyncBatchNormFunction.apply(x, weight, bias, running_mean, running_var,
                                       momentum=momentum, eps=eps, group=group)


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation over (N, C, ...) input with the statistics of all ranks'
    batches (PyTorch's ``nn.SyncBatchNorm``). In eval mode it uses the running
    statistics, like BatchNorm, and communicates nothing.

    Every rank must call it in the same order (it communicates in forward and
    backward), with the same number of channels; the batch sizes may differ.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (got {input.ndim}D "
                             f"input of shape {input.shape})")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training or self.running_mean is None
        if not use_batch_stats:
            return batch_norm(input, self.running_mean, self.running_var, self.weight,
                              self.bias, False, 0.0, self.eps)
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats
        if track:
            self.num_batches_tracked.data += 1  # in place: state_dict views see it
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        return sync_batch_norm(input, self.running_mean if track else None,
                               self.running_var if track else None, self.weight, self.bias,
                               factor, self.eps, self.process_group)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm that keeps its
        settings, its Parameter objects (an optimizer built before still holds them)
        and its buffers. Returns the module (a new one if ``module`` is a BatchNorm)."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, process_group)
            if module.affine:
                sync.weight, sync.bias = module.weight, module.bias  # the same objects
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(sync, name, getattr(module, name))
            sync.train(module.training)
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                converted = cls.convert_sync_batchnorm(child, process_group)
                if converted is not child:
                    setattr(module, name, converted)
        return module


def convert_sync_batchnorm(module: Module, process_group=None) -> Module:
    """``SyncBatchNorm.convert_sync_batchnorm(module)``: every BatchNorm becomes a
    SyncBatchNorm. Call it before ``DistributedDataParallel(module)``."""
    return SyncBatchNorm.convert_sync_batchnorm(module, process_group)
