"""Elementwise arithmetic, matmul and ``linear``, dtype and device moves.

Binary ops broadcast like NumPy; their backward sums the gradient back down to each
input's shape (``sum_to``), which is the step most hand-written autograds forget.
"""

from __future__ import annotations

import numbers

from .. import backend, precision
from ..autograd import Function
from ..tensors import Tensor, as_tensor
from .shape import transpose


def sum_to(xp, g, shape):
    """Sum ``g`` over the axes broadcasting added, so it has ``shape`` again."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1
    )
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def binary_operands(a, b):
    """Two tensors from two operands, with PyTorch's promotion rather than NumPy's.

    A Python number takes the other operand's dtype, and an integer tensor meeting a
    floating one takes the floating dtype: without this, ``x * 2`` or ``int64 + float32``
    would silently compute in float64.
    """
    if isinstance(a, numbers.Number) and isinstance(b, Tensor):
        a = Tensor(backend.array_module(b.data).asarray(a, dtype=_result_dtype(b, a)))
    if isinstance(b, numbers.Number) and isinstance(a, Tensor):
        b = Tensor(backend.array_module(a.data).asarray(b, dtype=_result_dtype(a, b)))
    a, b = as_tensor(a), as_tensor(b)
    if a.dtype.kind in "biu" and b.dtype.kind == "f":  # integers never require grad
        a = Tensor(a.data.astype(b.dtype))
    elif b.dtype.kind in "biu" and a.dtype.kind == "f":
        b = Tensor(b.data.astype(a.dtype))
    return a, b


def _result_dtype(t: Tensor, number):
    if t.dtype.kind in "biu" and isinstance(number, float):
        return "float32"
    return t.dtype


def _check_broadcast(op, a: Tensor, b: Tensor):
    try:
        backend.numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together") \
            from None


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, gy):
        # y = a + b  =>  ga = gy, gb = gy (summed over broadcast axes)
        sa, sb = ctx.shapes
        return sum_to(ctx.xp, gy, sa), sum_to(ctx.xp, gy, sb)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, gy):
        # y = a - b  =>  ga = gy, gb = -gy
        sa, sb = ctx.shapes
        return sum_to(ctx.xp, gy, sa), sum_to(ctx.xp, -gy, sb)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, gy):
        # y = a * b  =>  ga = gy * b, gb = gy * a
        a, b = ctx.saved_tensors
        ga = sum_to(ctx.xp, gy * b, a.shape) if ctx.needs_input_grad[0] else None
        gb = sum_to(ctx.xp, gy * a, b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, gy):
        # y = a / b  =>  ga = gy / b, gb = -gy * a / b^2
        a, b = ctx.saved_tensors
        ga = sum_to(ctx.xp, gy / b, a.shape) if ctx.needs_input_grad[0] else None
        gb = sum_to(ctx.xp, -gy * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, gy):
        # y = -x  =>  gx = -gy
        return -gy


class Pow(Function):
    @staticmethod
    def forward(ctx, x, *, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return x**exponent

    @staticmethod
    def backward(ctx, gy):
        # y = x^p  =>  gx = gy * p * x^(p-1)
        (x,) = ctx.saved_tensors
        p = ctx.exponent
        return gy * (p * x ** (p - 1)).astype(x.dtype, copy=False)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = e^x  =>  gx = gy * y
        (y,) = ctx.saved_tensors
        return gy * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, gy):
        # y = log x  =>  gx = gy / x
        (x,) = ctx.saved_tensors
        return gy / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        # y = sqrt(x)  =>  gx = gy / (2 y)
        (y,) = ctx.saved_tensors
        return gy / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, gy):
        # y = |x|  =>  gx = gy * sign(x)   (0 at the kink, as in PyTorch)
        (x,) = ctx.saved_tensors
        return gy * ctx.xp.sign(x)


class Matmul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return precision.matmul(a, b)

    @staticmethod
    def backward(ctx, gy):
        # y = a @ b  =>  ga = gy @ b^T, gb = a^T @ gy  (batch axes summed back if broadcast)
        xp = ctx.xp
        a, b = ctx.saved_tensors
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # dot product: gy is a scalar
            return gy * b if ctx.needs_input_grad[0] else None, gy * a
        # promote vectors to matrices so one rule covers every case
        a2 = a[None, :] if a.ndim == 1 else a  # (1, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (K, 1)
        gy2 = gy
        if a.ndim == 1:
            gy2 = xp.expand_dims(gy2, -2)  # (..., 1, M)
        if b.ndim == 1:
            gy2 = xp.expand_dims(gy2, -1)  # (..., N, 1)
        if ctx.needs_input_grad[0]:
            ga = precision.matmul(gy2, xp.swapaxes(b2, -1, -2))
            ga = sum_to(xp, ga, a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            gb = precision.matmul(xp.swapaxes(a2, -1, -2), gy2)
            gb = sum_to(xp, gb, b2.shape).reshape(b.shape)
        return ga, gb


class Cast(Function):
    @staticmethod
    def forward(ctx, x, *, dtype):
        ctx.dtype = x.dtype
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, gy):
        # y = x in another dtype  =>  gx = gy in x's dtype
        return gy.astype(ctx.dtype)


class ToDevice(Function):
    @staticmethod
    def forward(ctx, x, *, device):
        ctx.device = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, gy):
        # y = x on another device  =>  gx = gy moved back
        return backend.to_device(gy, ctx.device)


# --------------------------------------------------------------------------- wrappers


def add(a, b) -> Tensor:
    a, b = binary_operands(a, b)
    _check_broadcast("add", a, b)
    return Add.apply(a, b)


def sub(a, b) -> Tensor:
    a, b = binary_operands(a, b)
    _check_broadcast("sub", a, b)
    return Sub.apply(a, b)


def mul(a, b) -> Tensor:
    a, b = binary_operands(a, b)
    _check_broadcast("mul", a, b)
    return Mul.apply(a, b)


def div(a, b) -> Tensor:
    a, b = binary_operands(a, b)
    _check_broadcast("div", a, b)
    return Div.apply(a, b)


def neg(x) -> Tensor:
    return Neg.apply(x)


def pow(x, exponent) -> Tensor:
    if not isinstance(exponent, numbers.Number):
        raise TypeError(f"pow: the exponent must be a Python number, got {type(exponent).__name__}")
    return Pow.apply(x, exponent=exponent)


def exp(x) -> Tensor:
    """Element-wise ``e ** x``."""
    return Exp.apply(x)


def log(x) -> Tensor:
    """Element-wise natural logarithm (``-inf`` at 0, NaN below)."""
    return Log.apply(x)


def sqrt(x) -> Tensor:
    """Element-wise square root."""
    return Sqrt.apply(x)


def abs(x) -> Tensor:
    return Abs.apply(x)


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's (and PyTorch's) rules.

    (n, k) @ (k, m) -> (n, m); a 1-D argument is a vector; leading dimensions broadcast as a
    batch: (B, n, k) @ (k, m) -> (B, n, m). Follows ``set_float32_matmul_precision``.
    """
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({k_a} != {k_b})")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: expected both arguments to have the same dtype, got "
                        f"{a.dtype} and {b.dtype}")
    return Matmul.apply(a, b)


def linear(input, weight, bias=None) -> Tensor:
    """``y = input @ weight^T + bias``: an (..., in_features) input -> (...,
    out_features), with ``weight`` (out_features, in_features) and ``bias``
    (out_features,) or None. A composite of matmul and add, with no backward of its own."""
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


def cast(x, dtype) -> Tensor:
    return Cast.apply(x, dtype=dtype)


def to_device(x, device) -> Tensor:
    return ToDevice.apply(x, device=device)
