"""Loss modules around ``F.cross_entropy``, ``F.nll_loss`` and ``F.mse_loss``."""

from __future__ import annotations

from ..tensors import Tensor, as_tensor
from . import functional as F
from .module import Module


class _WeightedLoss(Module):
    """A class-index loss: ``weight`` is a buffer (it moves with ``to()`` and is saved in
    ``state_dict()`` when given), as in PyTorch."""

    def __init__(self, weight, ignore_index: int, reduction: str):
        super().__init__()
        self.register_buffer("weight", None if weight is None else as_tensor(weight))
        self.ignore_index, self.reduction = ignore_index, reduction


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy of (N, C) logits and (N,) integer class targets (or
    (N, C, d1, ...) and (N, d1, ...)), with PyTorch's ``weight``, ``ignore_index``,
    ``reduction`` and ``label_smoothing``."""

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, ignore_index, reduction)
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of (N, C) log-probabilities and (N,) class targets (or
    (N, C, d1, ...) and (N, d1, ...)), with PyTorch's ``weight``, ``ignore_index`` and
    ``reduction``."""

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(weight, ignore_index, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(Module):
    """Mean squared error ``(input - target) ** 2``, as a layer (``F.mse_loss``);
    ``reduction`` is 'mean', 'sum' or 'none'."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
