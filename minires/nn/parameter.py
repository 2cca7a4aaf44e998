"""``nn.Parameter``: a tensor that a Module registers as learnable."""

from __future__ import annotations

from .. import backend
from ..tensors import Tensor


class Parameter(Tensor):
    """A leaf tensor with ``requires_grad=True`` that ``Module`` collects automatically."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def empty_parameter(*shape) -> Parameter:
    """An uninitialised float32 CPU parameter, which the layer's ``reset_parameters``
    fills (modules are built on the CPU, then moved with ``to()``)."""
    xp = backend.array_module()  # numpy
    return Parameter(xp.empty(shape, dtype=xp.float32))
