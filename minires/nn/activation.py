"""Activation modules: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, softmaxes.

``inplace=True`` is accepted so PyTorch code (torchvision builds ``ReLU(inplace=True)``)
runs unchanged, but minires never overwrites its input: an op that modified an array
another op saved for backward would silently corrupt the gradient. The flag only shows
in the repr.
"""

from __future__ import annotations

from ..tensors import Tensor
from . import functional as F
from .module import Module


class ReLU(Module):
    """``max(x, 0)`` element-wise, as a layer (``F.relu``). ``inplace`` is accepted for
    PyTorch's signature and ignored (see the module's docstring)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace  # accepted and ignored, see the module docstring

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """``x`` for x > 0, ``negative_slope * x`` otherwise, as a layer (``F.leaky_relu``)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                          else "")


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` element-wise, as a layer (``F.sigmoid``)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(Module):
    """Hyperbolic tangent element-wise, as a layer (``F.tanh``)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Softmax(Module):
    """Softmax along ``dim``, as a layer (``F.softmax``): each slice sums to 1."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``log(softmax(x))`` along ``dim``, as a layer (``F.log_softmax``)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self.dim)
