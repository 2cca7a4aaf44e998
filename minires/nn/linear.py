"""``Identity`` and ``Linear``."""

from __future__ import annotations

from ..tensors import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import empty_parameter


class Identity(Module):
    """Returns its input unchanged; a placeholder that keeps a layer's name in place
    (e.g. the BatchNorm of a ResNet built with ``batch_norm=False``)."""

    def __init__(self, *args, **kwargs):  # accepts and ignores arguments, as PyTorch's
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """y = x @ weight^T + bias, with weight of shape (out_features, in_features).

    Initialised as PyTorch does: weight ~ kaiming_uniform_(a=sqrt(5)), i.e.
    U(-1/sqrt(in_features), 1/sqrt(in_features)), and bias from the same range.
    ``in_features=0`` is allowed, as in PyTorch: an empty weight (initialising it warns
    that it is a no-op), a zero bias, and an output equal to the bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Linear: {name} must be a non-negative int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter(out_features, in_features)
        if bias:
            self.bias = empty_parameter(out_features)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise weight and bias as PyTorch does: ``kaiming_uniform_(a=sqrt(5))`` and
        uniform in +-1/sqrt(fan_in)."""
        init.default_layer_init_(self.weight, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
