"""Kernel-versus-reference cases: the same inputs through a CUDA kernel and through the
pure-xp helper it replaces, compared element by element.

``tests/test_cuda_kernels.py`` and ``python -m minires.selftest`` both run these cases,
so the GPU checks live in one place. On the GPU ``xp`` is CuPy and the kernel runs on
the device; with ``minires.cuda.host`` the same kernel source runs on the CPU (``xp`` is
NumPy), which checks the index arithmetic where no GPU is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import backend
from ..ops.conv import col2im, im2col
from ..ops.geometry import output_size
from ..ops.loss import cross_entropy_forward
from ..ops.norm import batch_norm_backward
from ..ops.pool import max_pool2d_backward, max_pool2d_forward

DTYPES = (numpy.float32, numpy.float64)

# |kernel - reference| <= atol + rtol * |reference|. The kernels add in the reference's
# order where they can; float32 keeps room for exp/log and for sums whose order differs
# (a row of 1000 logits, CuPy's tree reductions).
TOLERANCE = {numpy.dtype(numpy.float32): (1e-5, 1e-5),
             numpy.dtype(numpy.float64): (1e-12, 1e-12)}


@dataclass
class Case:
    helper: str  # the name of the overridable helper in minires.ops
    label: str  # the geometry, for test ids and the selftest table
    make: object  # (xp, dtype, rng) -> positional arguments after xp

    @property
    def id(self) -> str:
        return f"{self.helper}[{self.label}]"


# (KH, KW, stride, padding, dilation): ResNet's 3x3 convolutions, its strided and 1x1
# shortcuts, the ImageNet stem, non-square kernels, uneven strides and padding, dilation
CONV_GEOMETRIES = [
    (3, 3, (1, 1), (1, 1), (1, 1)),
    (3, 3, (2, 2), (1, 1), (1, 1)),
    (1, 1, (2, 2), (0, 0), (1, 1)),
    (7, 7, (2, 2), (3, 3), (1, 1)),
    (3, 2, (2, 1), (1, 0), (1, 1)),
    (2, 3, (1, 3), (0, 2), (2, 1)),
    (3, 3, (1, 1), (2, 2), (2, 2)),
    (5, 4, (3, 2), (2, 1), (1, 2)),
]

# (KH, KW, stride, padding): the classic 2x2/2, overlapping windows (stride < kernel),
# ImageNet's 3x3/2 with padding, non-square windows, a window wider than its stride
POOL_GEOMETRIES = [
    (2, 2, (2, 2), (0, 0)),
    (3, 3, (2, 2), (1, 1)),
    (3, 3, (1, 1), (1, 1)),
    (3, 2, (2, 1), (1, 0)),
    (2, 4, (1, 3), (1, 2)),
]

X_SHAPE = (2, 3, 9, 8)  # odd sizes, so windows and strides do not tile the image evenly


def _normal(xp, dtype, rng, *shape):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def _label(KH, KW, stride, padding, dilation=None) -> str:
    text = f"k{KH}x{KW}-s{stride[0]}x{stride[1]}-p{padding[0]}x{padding[1]}"
    return text + (f"-d{dilation[0]}x{dilation[1]}" if dilation else "")


def _im2col_case(KH, KW, stride, padding, dilation):
    return Case("im2col", _label(KH, KW, stride, padding, dilation),
                lambda xp, dtype, rng: (_normal(xp, dtype, rng, *X_SHAPE), KH, KW, stride,
                                        padding, dilation))


def _col2im_case(KH, KW, stride, padding, dilation):
    def make(xp, dtype, rng):
        N, C, H, W = X_SHAPE
        OH = output_size(H, KH, stride[0], padding[0], dilation[0])
        OW = output_size(W, KW, stride[1], padding[1], dilation[1])
        col = _normal(xp, dtype, rng, C * KH * KW, N * OH * OW)
        return col, X_SHAPE, KH, KW, stride, padding, dilation
    return Case("col2im", _label(KH, KW, stride, padding, dilation), make)


def _pool_forward_case(KH, KW, stride, padding, ties=False):
    def make(xp, dtype, rng):
        if ties:  # three distinct values: most windows hold equal maxima
            x = rng.integers(0, 3, X_SHAPE).astype(dtype)
            return xp.asarray(x), KH, KW, stride, padding
        return _normal(xp, dtype, rng, *X_SHAPE), KH, KW, stride, padding
    label = _label(KH, KW, stride, padding) + ("-ties" if ties else "")
    return Case("max_pool2d_forward", label, make)


def _pool_backward_case(KH, KW, stride, padding, ties=False):
    def make(xp, dtype, rng):
        x = rng.integers(0, 3, X_SHAPE).astype(dtype) if ties else \
            rng.standard_normal(X_SHAPE).astype(dtype)
        # the argmax comes from the reference, so this case tests the backward alone
        y, argmax = max_pool2d_forward.reference(xp, xp.asarray(x), KH, KW, stride, padding)
        gy = _normal(xp, dtype, rng, *y.shape)
        return gy, argmax, X_SHAPE, KH, KW, stride, padding
    label = _label(KH, KW, stride, padding) + ("-ties" if ties else "")
    return Case("max_pool2d_backward", label, make)


def _batch_norm_case(shape, training):
    def make(xp, dtype, rng):
        axes = (0,) + tuple(range(2, len(shape)))
        x = rng.standard_normal(shape) * 3 + 1
        xhat = (x - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True)
        param = (1, shape[1]) + (1,) * (len(shape) - 2)
        scale = rng.uniform(0.5, 2, param)
        return (_normal(xp, dtype, rng, *shape), xp.asarray(xhat.astype(dtype)),
                xp.asarray(scale.astype(dtype)), training)
    label = "x".join(map(str, shape)) + ("-train" if training else "-eval")
    return Case("batch_norm_backward", label, make)


def _cross_entropy_case(N, C, scale, smoothing):
    def make(xp, dtype, rng):
        x = _normal(xp, dtype, rng, N, C) * dtype(scale)
        target = xp.asarray(rng.integers(0, C, N).astype(numpy.int64))
        return x, target, smoothing
    return Case("cross_entropy_forward", f"{N}x{C}-scale{scale}-smooth{smoothing}", make)


def cases() -> list:
    """Every kernel-versus-reference case."""
    out = []
    out += [_im2col_case(*g) for g in CONV_GEOMETRIES]
    out += [_col2im_case(*g) for g in CONV_GEOMETRIES]
    out += [_pool_forward_case(*g) for g in POOL_GEOMETRIES]
    out += [_pool_forward_case(3, 3, (1, 1), (1, 1), ties=True),
            _pool_forward_case(2, 2, (2, 2), (0, 0), ties=True)]
    out += [_pool_backward_case(*g) for g in POOL_GEOMETRIES]
    out += [_pool_backward_case(3, 3, (1, 1), (1, 1), ties=True)]
    out += [_batch_norm_case(shape, training) for shape in ((4, 5, 3, 3), (6, 5), (3, 4, 7))
            for training in (True, False)]
    out += [_cross_entropy_case(7, 10, 3.0, 0.0), _cross_entropy_case(7, 10, 3.0, 0.1),
            _cross_entropy_case(5, 1000, 1.0, 0.0), _cross_entropy_case(9, 3, 100.0, 0.2)]
    return out


HELPERS = {"im2col": im2col, "col2im": col2im, "max_pool2d_forward": max_pool2d_forward,
           "max_pool2d_backward": max_pool2d_backward,
           "batch_norm_backward": batch_norm_backward,
           "cross_entropy_forward": cross_entropy_forward}


def compare(kernel_out, reference_out, dtype) -> str | None:
    """None when the outputs match (same shapes, dtypes, values), else what differs."""
    kernel_out = kernel_out if isinstance(kernel_out, tuple) else (kernel_out,)
    reference_out = reference_out if isinstance(reference_out, tuple) else (reference_out,)
    if len(kernel_out) != len(reference_out):
        return f"{len(kernel_out)} outputs, the reference returns {len(reference_out)}"
    rtol, atol = TOLERANCE[numpy.dtype(dtype)]
    for k, (a, b) in enumerate(zip(kernel_out, reference_out)):
        a, b = backend.to_numpy(a), backend.to_numpy(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {k}: {a.dtype}{a.shape}, reference {b.dtype}{b.shape}"
        if a.dtype.kind in "iub":
            if not numpy.array_equal(a, b):
                return f"output {k}: {int((a != b).sum())} of {a.size} integers differ"
        elif not numpy.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True):
            error = numpy.abs(a.astype(numpy.float64) - b)
            worst = numpy.unravel_index(numpy.nanargmax(error), error.shape)
            return (f"output {k}: max |difference| {error[worst]:.3g} at {tuple(worst)} "
                    f"(kernel {a[worst]!r}, reference {b[worst]!r}; rtol={rtol}, atol={atol})")
    return None


def run_case(case: Case, kernel, xp, dtype, seed: int = 0) -> str | None:
    """Run ``case`` through ``kernel`` and the reference; None if they agree."""
    args = case.make(xp, numpy.dtype(dtype).type, numpy.random.default_rng(seed))
    reference = HELPERS[case.helper].reference(xp, *args)
    return compare(kernel(xp, *args), reference, dtype)
