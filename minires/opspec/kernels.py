"""CUDA kernels against the pure-xp helpers they replace: the cases and the comparison.

Each op spec lists the cases of its own kernels (``OpSpec.kernel_cases``: conv2d's
im2col and col2im, max_pool2d's forward and backward, batch_norm's backward,
cross_entropy's forward). A case makes the helper's arguments for an array module, a
dtype and a random generator; ``run_case`` runs them through a kernel and through the
reference and compares element by element. ``tests/test_cuda_kernels.py`` and the
selftest run every case: on the GPU with CuPy, and on the CPU with the kernels' own
source built by a C++ compiler (``minires.cuda_kernels.host``), which checks their
index arithmetic where no GPU is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from .. import backend
from ..ops.conv import col2im, im2col
from ..ops.loss import cross_entropy_forward
from ..ops.norm import batch_norm_backward
from ..ops.pool import max_pool2d_backward, max_pool2d_forward

DTYPES = (numpy.float32, numpy.float64)

# |kernel - reference| <= atol + rtol * |reference|. The kernels add in the reference's
# order where they can; float32 keeps room for exp/log and for sums whose order differs
# (a row of 1000 logits, CuPy's tree reductions).
TOLERANCE = {numpy.dtype(numpy.float32): (1e-5, 1e-5),
             numpy.dtype(numpy.float64): (1e-12, 1e-12)}

# the overridable helpers of minires.ops, by name: what a kernel replaces
HELPERS = {"im2col": im2col, "col2im": col2im, "max_pool2d_forward": max_pool2d_forward,
           "max_pool2d_backward": max_pool2d_backward,
           "batch_norm_backward": batch_norm_backward,
           "cross_entropy_forward": cross_entropy_forward}


@dataclass
class Case:
    helper: str  # the name of the overridable helper in minires.ops
    label: str  # the geometry, for test ids and the selftest table
    make: object  # (xp, dtype, rng) -> positional arguments after xp

    @property
    def id(self) -> str:
        return f"{self.helper}[{self.label}]"


def normal(xp, dtype, rng, *shape):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def label(KH, KW, stride, padding, dilation=None) -> str:
    text = f"k{KH}x{KW}-s{stride[0]}x{stride[1]}-p{padding[0]}x{padding[1]}"
    return text + (f"-d{dilation[0]}x{dilation[1]}" if dilation else "")


def cases() -> list:
    """Every kernel-versus-reference case, from every spec that has kernels."""
    from . import SPECS

    return [case for spec in SPECS if spec.kernel_cases for case in spec.kernel_cases()]


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
