"""The fully connected layer, composed from matmul and add (no backward of its own)."""

from __future__ import annotations

from ..tensors import Tensor, as_tensor
from .basic import add, matmul
from .shape import transpose


def linear(input, weight, bias=None) -> Tensor:
    """y = input @ weight^T + bias, with weight of shape (out_features, in_features)."""
    x, w = as_tensor(input), as_tensor(weight)
    if w.ndim != 2:
        raise ValueError(f"linear: expected a 2-D weight (out_features, in_features), got shape "
                         f"{w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} has {x.shape[-1] if x.ndim else 0} "
                         f"features but weight of shape {w.shape} expects {w.shape[1]}")
    y = matmul(x, transpose(w, 0, 1))
    if bias is not None:
        b = as_tensor(bias)
        if b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {b.shape} does not match the {w.shape[0]} "
                             f"outputs of weight {w.shape}")
        y = add(y, b)
    return y
