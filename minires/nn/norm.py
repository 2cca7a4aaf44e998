"""``BatchNorm1d`` and ``BatchNorm2d`` (Ioffe & Szegedy, 2015).

In training mode each channel is normalised with the statistics of the current batch,
and the running estimates used in evaluation mode are updated in place:
running = (1 - momentum) * running + momentum * batch_statistic (the variance unbiased).
``num_batches_tracked`` counts training steps; it is only used when ``momentum=None``
(a cumulative average), but is saved in ``state_dict`` so checkpoints match PyTorch's.
"""

from __future__ import annotations

from .. import backend
from ..ops import channel_major as cm
from ..ops.fused_norm import batch_norm_act
from ..tensors import Tensor, as_tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import empty_parameter


class _BatchNorm(Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = empty_parameter(num_features)
            self.bias = empty_parameter(num_features)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            xp = backend.array_module()  # numpy: modules are built on the CPU
            self.register_buffer("running_mean", Tensor(xp.zeros(num_features, xp.float32)))
            self.register_buffer("running_var", Tensor(xp.ones(num_features, xp.float32)))
            self.register_buffer("num_batches_tracked", Tensor(xp.zeros((), xp.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        # each subclass (BatchNorm1d, BatchNorm2d) knows which input sizes it accepts
        raise NotImplementedError(f"{type(self).__name__} must define _check_input_dim(); "
                                  "use BatchNorm1d or BatchNorm2d")

    def _functional_args(self) -> tuple:
        """Count the batch and return the arguments of ``F.batch_norm`` after the input:
        (running_mean, running_var, weight, bias, training, momentum, eps)."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1  # in place: state_dict views see it
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        # batch statistics when training, or when there are no running ones to use
        use_batch_stats = self.training or self.running_mean is None
        # running stats are passed (and updated) only when they are tracked
        track = not self.training or self.track_running_stats
        return (self.running_mean if track else None, self.running_var if track else None,
                self.weight, self.bias, use_batch_stats, factor, self.eps)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        input = as_tensor(input)
        if cm.find_grid(input.data) is not None:  # keep the fast path's layout
            return batch_norm_act(input, *self._functional_args(), relu=False)
        return F.batch_norm(input, *self._functional_args())

    def forward_relu(self, input: Tensor, residual: Tensor | None = None) -> Tensor:
        """``relu(self(input) + residual)`` as one op of the channel-major fast path
        (``minires.ops.fused_norm``); the ResNet blocks call it when no hook is
        registered on the modules it stands for. Returns the NCHW view of a grid."""
        self._check_input_dim(input)
        return batch_norm_act(input, *self._functional_args(), residual=residual, relu=True)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) input, per channel C."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d: expected 2D or 3D input (got {input.ndim}D input "
                             f"of shape {input.shape})")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) input, per channel C."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 4:
            raise ValueError(f"BatchNorm2d: expected 4D input (got {input.ndim}D input of "
                             f"shape {input.shape})")
