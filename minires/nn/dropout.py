"""``Dropout``: random zeroing during training only."""

from __future__ import annotations

from ..tensors import Tensor
from . import functional as F
from .module import Module


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode (scaling the rest by
    1/(1-p)); the identity in evaluation mode. The mode is the module's ``training``
    flag, set by ``train()``/``eval()``, never a global.

    The mask is drawn from ``backend.generator``, on the device of the input. Inside
    ``minires.train.fit`` every step runs in its own keyed random stream, so a step's
    masks depend only on its position in the run and come back the same on resume."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace  # inplace accepted and ignored, as in ReLU

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"

