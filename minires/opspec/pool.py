"""The specs of max_pool2d, avg_pool2d and adaptive_avg_pool2d (``minires/ops/pool.py``)."""

from __future__ import annotations

import numpy as np

from ..nn import functional as F
from ..ops.pool import max_pool2d_forward
from ..tensors import randn as _randn
from .inputs import normal, ramp
from .kernels import Case, label
from .kernels import normal as kernel_normal
from .records import ErrorCase, OpSpec, Sample

_MAX_KINKS = ("two equal values in a window: the inputs are a shuffled ramp (values 0.01 "
              "apart), so no window holds a near-tie")


def _pool_geometry(kernel_size, stride, padding):
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)
    k = pair(kernel_size)
    return k, (k if stride is None else pair(stride)), pair(padding)


# --------------------------------------------------------------------------- loops


def _pool_loops(x, kernel_size, stride, padding, reduce, pad_value):
    (KH, KW), (SH, SW), (PH, PW) = _pool_geometry(kernel_size, stride, padding)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value)
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    y[n, c, oh, ow] = reduce(xp[n, c, oh * SH:oh * SH + KH,
                                                ow * SW:ow * SW + KW])
    return y


def max_pool2d_reference(x, kernel_size, stride=None, padding=0):
    """The maximum of each window; padding is -inf, so it never wins."""
    return _pool_loops(x, kernel_size, stride, padding, np.max, -np.inf)


def max_pool2d_grad_reference(gy, x, kernel_size, stride=None, padding=0):
    """(gx,): each window's gy goes to the element that won its max (the first of equal
    ones); overlapping windows add up."""
    (KH, KW), (SH, SW), (PH, PW) = _pool_geometry(kernel_size, stride, padding)
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=-np.inf)
    gxp = np.zeros_like(xp)
    for n in range(N):
        for c in range(C):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    window = xp[n, c, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW]
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    gxp[n, c, oh * SH + i, ow * SW + j] += gy[n, c, oh, ow]
    return (gxp[:, :, PH:PH + H, PW:PW + W],)


def avg_pool2d_reference(x, kernel_size, stride=None, padding=0):
    """The mean of each window, the zeros of the padding counted (as in PyTorch)."""
    return _pool_loops(x, kernel_size, stride, padding, np.mean, 0.0)


def adaptive_avg_pool2d_reference(x, output_size):
    """The mean of each of OH x OW equal bins (minires takes sizes that divide)."""
    OH, OW = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = x.shape
    y = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            y[:, :, oh, ow] = x[:, :, oh * H // OH:(oh + 1) * H // OH,
                                ow * W // OW:(ow + 1) * W // OW].mean(axis=(2, 3))
    return y


# --------------------------------------------------------------------------- samples


def _draw_pool(rng):
    """Window, stride and padding per axis (padding at most half the window, PyTorch's
    rule) and odd sizes with 1 to 4 outputs per axis."""
    K = [int(k) for k in rng.integers(1, 4, 2)]
    S = [int(s) for s in rng.integers(1, 4, 2)]
    P = [int(rng.integers(0, k // 2 + 1)) for k in K]
    size = [max(1, k - 2 * p) + int(rng.integers(0, 4)) * s for k, s, p in zip(K, S, P)]
    N, C = (int(v) for v in rng.integers(1, 4, 2))
    return (N, C, *size), tuple(K), tuple(S), tuple(P)


def _pool_draws(name, maker):
    def draw(rng):
        out = []
        for i in range(2):
            shape, K, S, P = _draw_pool(rng)
            out.append(Sample(f"{name}_random{i}", (maker(*shape),), (K, S, P),
                              note=f"{shape}, kernel {K}, stride {S}, padding {P}"))
        return out
    return draw


def _adaptive_draws(rng):
    OH, OW = (int(v) for v in rng.integers(1, 4, 2))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
             OH * int(rng.integers(1, 4)), OW * int(rng.integers(1, 4)))
    return [Sample("adaptive_avg_pool2d_random", (normal(*shape),), ((OH, OW),),
                   note=f"{shape} to ({OH}, {OW})")]


# --------------------------------------------------------------------------- kernels

# (KH, KW, stride, padding): the classic 2x2/2, overlapping windows (stride < kernel),
# ImageNet's 3x3/2 with padding, non-square windows, a window wider than its stride
KERNEL_GEOMETRIES = [
    (2, 2, (2, 2), (0, 0)),
    (3, 3, (2, 2), (1, 1)),
    (3, 3, (1, 1), (1, 1)),
    (3, 2, (2, 1), (1, 0)),
    (2, 4, (1, 3), (1, 2)),
]

KERNEL_X_SHAPE = (2, 3, 9, 8)  # odd sizes: windows and strides do not tile it evenly


def _forward_case(KH, KW, stride, padding, ties=False):
    def make(xp, dtype, rng):
        if ties:  # three distinct values: most windows hold equal maxima
            x = rng.integers(0, 3, KERNEL_X_SHAPE).astype(dtype)
            return xp.asarray(x), KH, KW, stride, padding
        return kernel_normal(xp, dtype, rng, *KERNEL_X_SHAPE), KH, KW, stride, padding
    return Case("max_pool2d_forward", label(KH, KW, stride, padding) + ("-ties" if ties else ""),
                make)


def _backward_case(KH, KW, stride, padding, ties=False):
    def make(xp, dtype, rng):
        x = rng.integers(0, 3, KERNEL_X_SHAPE).astype(dtype) if ties else \
            rng.standard_normal(KERNEL_X_SHAPE).astype(dtype)
        # the argmax comes from the reference, so this case tests the backward alone
        y, argmax = max_pool2d_forward.reference(xp, xp.asarray(x), KH, KW, stride, padding)
        gy = kernel_normal(xp, dtype, rng, *y.shape)
        return gy, argmax, KERNEL_X_SHAPE, KH, KW, stride, padding
    return Case("max_pool2d_backward",
                label(KH, KW, stride, padding) + ("-ties" if ties else ""), make)


def kernel_cases() -> list:
    return [_forward_case(*g) for g in KERNEL_GEOMETRIES] + \
        [_forward_case(3, 3, (1, 1), (1, 1), ties=True),
         _forward_case(2, 2, (2, 2), (0, 0), ties=True)] + \
        [_backward_case(*g) for g in KERNEL_GEOMETRIES] + \
        [_backward_case(3, 3, (1, 1), (1, 1), ties=True)]


def _x4(d):
    return _randn(2, 3, 8, 8, device=d)


SPECS = [
    OpSpec("max_pool2d", F.max_pool2d, (
        Sample("max_pool2d", (ramp(2, 2, 4, 4),), (2,), note="2x2 windows",
               tags=frozenset({"course"})),
        Sample("max_pool2d_overlap_pad", (ramp(2, 2, 5, 5),), (3,),
               {"stride": 2, "padding": 1}, note="overlapping 3x3 windows, stride 2, padding 1",
               tags=frozenset({"course"})),
        Sample("max_pool2d_rect", (ramp(1, 2, 4, 5),), ((2, 3),), {"stride": 1},
               note="2x3 windows, stride 1", tags=frozenset({"course"})),
        Sample("max_pool2d_2x3_stride1x2_pad1", (ramp(2, 3, 7, 6),), ((2, 3), (1, 2), (1, 1)),
               note="2x3 windows, stride (1, 2), padding 1"),
        Sample("max_pool2d_devices", (normal(8, 16, 15, 14),), (3,),
               {"stride": 2, "padding": 1}, gradcheck=False, tags=frozenset({"devices"}),
               note="(8, 16, 15, 14), 3x3 windows, stride 2, padding 1"),
    ), draw=_pool_draws("max_pool2d", ramp), torch="torch.nn.functional.max_pool2d",
        kinks=_MAX_KINKS, reference=max_pool2d_reference,
        reference_grad=max_pool2d_grad_reference, kernel_cases=kernel_cases,
        errors=(ErrorCase("max_pool2d 3-d", lambda d: F.max_pool2d(_randn(3, 8, 8, device=d), 2),
                          r"max_pool2d: .*\(3, 8, 8\)"),
                ErrorCase("max_pool2d big padding",
                          lambda d: F.max_pool2d(_x4(d), 2, padding=2), r"max_pool2d: padding"))),
    OpSpec("avg_pool2d", F.avg_pool2d, (
        Sample("avg_pool2d", (normal(2, 2, 4, 4),), (2,)),
        Sample("avg_pool2d_overlap_pad", (normal(2, 2, 4, 5),), (3,), {"stride": 1, "padding": 1}),
        Sample("avg_pool2d_2x3_stride1x2_pad1", (normal(2, 3, 7, 6),), ((2, 3), (1, 2), (1, 1)),
               note="2x3 windows, stride (1, 2), padding 1"),
    ), draw=_pool_draws("avg_pool2d", normal), torch="torch.nn.functional.avg_pool2d",
        reference=avg_pool2d_reference,
        errors=(ErrorCase("avg_pool2d too big",
                          lambda d: F.avg_pool2d(_randn(1, 1, 2, 2, device=d), 3),
                          r"avg_pool2d: kernel"),)),
    OpSpec("adaptive_avg_pool2d", F.adaptive_avg_pool2d, (
        Sample("adaptive_avg_pool2d_1", (normal(2, 3, 4, 4),), (1,),
               note="global average pooling"),
        Sample("adaptive_avg_pool2d_2", (normal(2, 3, 4, 6),), (2,)),
        Sample("adaptive_avg_pool2d_2x3", (normal(2, 3, 4, 6),), ((2, 3),)),
    ), draw=_adaptive_draws, torch="torch.nn.functional.adaptive_avg_pool2d",
        reference=adaptive_avg_pool2d_reference),
]
