"""The spec of conv2d (``minires/ops/conv.py``): samples, loops, errors, kernel cases."""

from __future__ import annotations

import numpy as np

from ..nn import functional as F
from ..ops.geometry import output_size
from ..tensors import randn as _randn
from .inputs import normal
from .kernels import Case, label
from .kernels import normal as kernel_normal
from .records import ErrorCase, OpSpec, Sample


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# --------------------------------------------------------------------------- loops


def conv2d_reference(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, f, oh, ow] = b[f] + sum over c, i, j of w[f, c, i, j] * x_padded[n, c,
    oh*SH + i*DH, ow*SW + j*DW], one multiply-add at a time."""
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW), (DH, DW) = _pair(stride), _pair(padding), _pair(dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    y = np.zeros((N, Fo, OH, OW))
    for n in range(N):
        for f in range(Fo):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if b is None else b[f]
                    for c in range(C):
                        for i in range(KH):
                            for j in range(KW):
                                total += w[f, c, i, j] * xp[n, c, oh * SH + i * DH,
                                                            ow * SW + j * DW]
                    y[n, f, oh, ow] = total
    return y


def conv2d_grad_reference(gy, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """(gx, gw[, gb]) of sum(gy * conv2d(x, w, b)) by the definition: each output pixel's
    gradient flows back to every input pixel and weight that made it."""
    N, C, H, W = x.shape
    Fo, _, KH, KW = w.shape
    (SH, SW), (PH, PW), (DH, DW) = _pair(stride), _pair(padding), _pair(dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(N):
        for f in range(Fo):
            for oh in range(gy.shape[2]):
                for ow in range(gy.shape[3]):
                    rows = slice(oh * SH, oh * SH + DH * (KH - 1) + 1, DH)
                    cols = slice(ow * SW, ow * SW + DW * (KW - 1) + 1, DW)
                    gw[f] += gy[n, f, oh, ow] * xp[n, :, rows, cols]
                    gxp[n, :, rows, cols] += gy[n, f, oh, ow] * w[f]
    grads = (gxp[:, :, PH:PH + H, PW:PW + W], gw)
    return grads if b is None else grads + (gy.sum(axis=(0, 2, 3)),)


# --------------------------------------------------------------------------- samples


def draw_geometry(rng, dilation=True):
    """Odd sizes and independent heights and widths: kernel, stride, padding, dilation
    drawn per axis, and an input just large enough for 1 to 4 output rows and columns."""
    K = [int(k) for k in rng.integers(1, 4, 2)]
    S = [int(s) for s in rng.integers(1, 4, 2)]
    D = [int(d) for d in rng.integers(1, 3, 2)] if dilation else [1, 1]
    P = [int(rng.integers(0, k)) for k in K]
    size = [max(1, d * (k - 1) + 1 - 2 * p) + int(rng.integers(0, 4)) * s
            for k, s, p, d in zip(K, S, P, D)]
    return K, S, P, D, size


def _conv_draws(rng):
    out = []
    for i in range(3):
        K, S, P, D, (H, W) = draw_geometry(rng)
        N, C, Fo = (int(v) for v in rng.integers(1, 4, 3))
        bias = bool(rng.random() < 0.5)
        inputs = (normal(N, C, H, W), normal(Fo, C, *K)) + ((normal(Fo),) if bias else ())
        settings = {"stride": tuple(S), "padding": tuple(P), "dilation": tuple(D)}
        out.append(Sample(f"conv2d_random{i}", inputs, kwargs=settings,
                          note=f"x {(N, C, H, W)}, kernel {tuple(K)}, stride {tuple(S)}, "
                          f"padding {tuple(P)}, dilation {tuple(D)}, "
                          f"{'bias' if bias else 'no bias'}"))
    return out


# --------------------------------------------------------------------------- kernels

# (KH, KW, stride, padding, dilation): ResNet's 3x3 convolutions, its strided and 1x1
# shortcuts, the ImageNet stem, non-square kernels, uneven strides and padding, dilation
KERNEL_GEOMETRIES = [
    (3, 3, (1, 1), (1, 1), (1, 1)),
    (3, 3, (2, 2), (1, 1), (1, 1)),
    (1, 1, (2, 2), (0, 0), (1, 1)),
    (7, 7, (2, 2), (3, 3), (1, 1)),
    (3, 2, (2, 1), (1, 0), (1, 1)),
    (2, 3, (1, 3), (0, 2), (2, 1)),
    (3, 3, (1, 1), (2, 2), (2, 2)),
    (5, 4, (3, 2), (2, 1), (1, 2)),
]

KERNEL_X_SHAPE = (2, 3, 9, 8)  # odd sizes: windows and strides do not tile it evenly


def _im2col_case(KH, KW, stride, padding, dilation):
    return Case("im2col", label(KH, KW, stride, padding, dilation),
                lambda xp, dtype, rng: (kernel_normal(xp, dtype, rng, *KERNEL_X_SHAPE), KH, KW,
                                        stride, padding, dilation))


def _col2im_case(KH, KW, stride, padding, dilation):
    def make(xp, dtype, rng):
        N, C, H, W = KERNEL_X_SHAPE
        OH = output_size(H, KH, stride[0], padding[0], dilation[0])
        OW = output_size(W, KW, stride[1], padding[1], dilation[1])
        col = kernel_normal(xp, dtype, rng, C * KH * KW, N * OH * OW)
        return col, KERNEL_X_SHAPE, KH, KW, stride, padding, dilation
    return Case("col2im", label(KH, KW, stride, padding, dilation), make)


def kernel_cases() -> list:
    return [_im2col_case(*g) for g in KERNEL_GEOMETRIES] + \
        [_col2im_case(*g) for g in KERNEL_GEOMETRIES]


# --------------------------------------------------------------------------- errors


def _x4(d):
    return _randn(2, 3, 8, 8, device=d)


def _w4(d):
    return _randn(4, 3, 3, 3, device=d)


ERRORS = (
    ErrorCase("conv2d wrong channels", lambda d: F.conv2d(_x4(d), _randn(4, 5, 3, 3, device=d)),
              r"conv2d: .*\(2, 3, 8, 8\) has 3 channels.*\(4, 5, 3, 3\)"),
    ErrorCase("conv2d 3-d input", lambda d: F.conv2d(_randn(3, 8, 8, device=d), _w4(d)),
              r"conv2d: .*4-D.*\(3, 8, 8\)"),
    ErrorCase("conv2d kernel too big", lambda d: F.conv2d(_randn(1, 3, 2, 2, device=d), _w4(d)),
              r"conv2d: kernel"),
    ErrorCase("conv2d dtype", lambda d: F.conv2d(_x4(d).double(), _w4(d)),
              r"conv2d: .*float64.*float32"),
    ErrorCase("conv2d bias shape", lambda d: F.conv2d(_x4(d), _w4(d), _randn(3, device=d)),
              r"conv2d: bias of shape \(3,\)"),
    ErrorCase("conv2d stride 0", lambda d: F.conv2d(_x4(d), _w4(d), stride=0),
              r"conv2d: need stride >= 1"),
    ErrorCase("conv2d bad stride type", lambda d: F.conv2d(_x4(d), _w4(d), stride=1.5),
              r"conv2d: stride"),
    ErrorCase("conv2d weight on another device", lambda d: F.conv2d(_x4(d), _w4("cpu")),
              r"Conv2d: expected all tensors to be on the same device", devices=True),
)

SPECS = [
    OpSpec("conv2d", F.conv2d, (
        Sample("conv2d", (normal(2, 3, 5, 5), normal(4, 3, 3, 3), normal(4)),
               kwargs={"padding": 1}, note="3x3 kernel, padding 1, bias",
               tags=frozenset({"course"})),
        Sample("conv2d_stride2_rect_kernel_no_bias", (normal(2, 2, 6, 5), normal(3, 2, 3, 2)),
               kwargs={"stride": (2, 1), "padding": (1, 0)},
               note="3x2 kernel, stride (2, 1), padding (1, 0), no bias",
               tags=frozenset({"course"})),
        # stride 1 takes the flipped-kernel path in backward, other strides col2im
        Sample("conv2d_stride1_rect_kernel_uneven_padding",
               (normal(2, 2, 5, 4), normal(3, 2, 3, 2)), kwargs={"padding": (0, 1)},
               note="3x2 kernel, stride 1, padding (0, 1)"),
        Sample("conv2d_1x1_stride2", (normal(2, 3, 5, 5), normal(2, 3, 1, 1)),
               kwargs={"stride": 2}, note="1x1 kernel, stride 2 (a ResNet shortcut)",
               tags=frozenset({"course"})),
        Sample("conv2d_dilation", (normal(1, 2, 5, 5), normal(2, 2, 3, 3)),
               kwargs={"padding": 2, "dilation": 2}, note="dilation 2, padding 2",
               tags=frozenset({"course"})),
        Sample("conv2d_stride2x1_padding0x1", (normal(1, 2, 8, 6), normal(3, 2, 3, 2)),
               kwargs={"stride": (2, 1), "padding": (0, 1)},
               note="3x2 kernel, stride (2, 1), padding (0, 1)"),
        Sample("conv2d_dilation2_stride2", (normal(1, 2, 9, 9), normal(2, 2, 3, 3)),
               kwargs={"stride": 2, "padding": 2, "dilation": 2},
               note="dilation 2, stride 2, padding 2"),
        Sample("conv2d_devices", (normal(8, 16, 15, 14), normal(32, 16, 3, 3)),
               kwargs={"stride": 2, "padding": 1}, gradcheck=False,
               tags=frozenset({"devices"}), note="(8, 16, 15, 14), 3x3, stride 2, padding 1"),
    ), draw=_conv_draws, torch="torch.nn.functional.conv2d", reference=conv2d_reference,
        reference_grad=conv2d_grad_reference, errors=ERRORS, kernel_cases=kernel_cases),
]
