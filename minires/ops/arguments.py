"""Argument checks of the op wrappers: each error names the op and the shapes.

An op's wrapper normalises its arguments (a ``dim`` of -1, an int for a pair) and
checks them before ``Function.apply``, so a mistake is reported in PyTorch's words
instead of failing deep inside NumPy. The checks that more than one op needs live here.
"""

from __future__ import annotations

from ..tensors import as_tensor
from .geometry import output_shape, pair

REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------- dims


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    """One dimension, negative counting from the end -> its index (a 0-d tensor has
    dimension 0)."""
    if not -ndim <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor with {ndim} dims")
    return dim % max(ndim, 1)


def normalize_dims(dim, ndim: int, op: str) -> tuple:
    """``dim`` of a reduction (None: all, an int, or a tuple) -> a sorted tuple of
    non-negative axes (a 0-d tensor accepts 0 and -1 and reduces over nothing, as in
    PyTorch)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = ndim or 1
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dims")
    return tuple(sorted(d % n for d in dims)) if ndim else ()


# --------------------------------------------------------------------------- windows


def check_conv_args(op, input, weight, bias, stride, padding, dilation, groups):
    """-> ((x, w, b), stride, padding, dilation), b None without bias, or a clear error
    naming ``op``."""
    x, w = as_tensor(input), as_tensor(weight)
    stride, padding = pair(stride, "stride", op), pair(padding, "padding", op)
    dilation = pair(dilation, "dilation", op)
    if groups != 1:
        raise ValueError(f"{op}: only groups=1 is supported, got groups={groups}")
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight (F, C, KH, KW), got shape {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: input of shape {x.shape} has {x.shape[1]} channels but "
                         f"weight of shape {w.shape} expects {w.shape[1]}")
    if min(stride) < 1 or min(padding) < 0 or min(dilation) < 1:
        raise ValueError(f"{op}: need stride >= 1, padding >= 0 and dilation >= 1, got "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} and weight dtype {w.dtype} differ")
    (_, _, H, W), (_, _, KH, KW) = x.shape, w.shape
    if min(output_shape(H, W, (KH, KW), stride, padding, dilation)) < 1:
        raise ValueError(f"{op}: kernel ({KH}, {KW}) is larger than the padded input "
                         f"({H + 2 * padding[0]}, {W + 2 * padding[1]}) for input shape "
                         f"{x.shape}")
    b = None if bias is None else as_tensor(bias)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: bias of shape {b.shape} does not match the "
                         f"{w.shape[0]} output channels of weight {w.shape}")
    return (x, w, b), stride, padding, dilation


def check_pool_args(op, input, kernel_size, stride, padding):
    """-> (x, settings of the pooling Function), or a clear error naming ``op``."""
    x = as_tensor(input)
    kernel = pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None or stride == [] else pair(stride, "stride", op)
    padding = pair(padding, "padding", op)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: need kernel_size >= 1, stride >= 1, padding >= 0, got "
                         f"kernel_size={kernel}, stride={stride}, padding={padding}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {padding} should be at most half of kernel_size "
                         f"{kernel}")
    H, W = x.shape[2:]
    if min(output_shape(H, W, kernel, stride, padding)) < 1:
        raise ValueError(f"{op}: kernel_size {kernel} is larger than the padded input "
                         f"({H + 2 * padding[0]}, {W + 2 * padding[1]}) of shape {x.shape}")
    return x, dict(kernel_size=kernel, stride=stride, padding=padding)


# --------------------------------------------------------------------------- norms


def check_channel_tensors(op: str, x, **tensors) -> None:
    """Each named (C,) tensor (or None) matches the channels and dtype of the input x."""
    C = x.shape[1]
    for name, t in tensors.items():
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)} but the input of "
                             f"shape {x.shape} has {C} channels")
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype} but the input has {x.dtype}")


def check_batch_statistics(op: str, x, running_mean, running_var, training: bool) -> None:
    """Training needs more than one value per channel; evaluation needs statistics."""
    if training and x.numel() // x.shape[1] <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                         f"got input of shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean and running_var are needed when "
                         "training=False")


# --------------------------------------------------------------------------- losses


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
