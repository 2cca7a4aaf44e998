"""The spec of the CPU fast path's convolution (``minires/ops/fast_conv.py``): the same
results as ``F.conv2d``, so the same loops and PyTorch's conv2d check it."""

from __future__ import annotations

from ..ops import fast_conv
from .conv import conv2d_grad_reference, conv2d_reference
from .inputs import normal
from .records import OpSpec, Sample


def _chain(f, x, w1, w2):
    # a chain of two: the second convolution's input and gradient arrive on grids
    return f(f(x, w1, padding=1), w2, stride=2, padding=1)


def _draws(rng):
    """The geometries with a fast path: a square kernel K, equal strides and padding
    0 or 1; "same" ones (stride 1, K = 2P + 1) take the block-copy path."""
    out = []
    for i in range(2):
        P = int(rng.integers(0, 2))
        K = int(rng.integers(max(1, P), 4)) if i else 2 * P + 1
        S = int(rng.integers(1, 3)) if i else 1
        H, W = (max(1, K - 2 * P) + int(rng.integers(0, 4)) * S for _ in range(2))
        N, C, Fo = (int(v) for v in rng.integers(1, 4, 3))
        bias = bool(rng.random() < 0.5)
        inputs = (normal(N, C, H, W), normal(Fo, C, K, K)) + ((normal(Fo),) if bias else ())
        out.append(Sample(f"fast_conv2d_random{'_same' if not i else ''}", inputs,
                          kwargs={"stride": S, "padding": P},
                          note=f"x {(N, C, H, W)}, {K}x{K} kernel, stride {S}, padding {P}, "
                          f"{'bias' if bias else 'no bias'}"))
    return out


SPECS = [
    OpSpec("fast_conv2d", fast_conv.conv2d, (
        Sample("fast_conv2d_same_3x3_bias", (normal(2, 3, 5, 4), normal(4, 3, 3, 3), normal(4)),
               kwargs={"padding": 1}),
        Sample("fast_conv2d_same_1x1", (normal(2, 3, 4, 5), normal(2, 3, 1, 1))),
        Sample("fast_conv2d_stride2_3x3_odd_size", (normal(2, 2, 7, 6), normal(3, 2, 3, 3)),
               kwargs={"stride": 2, "padding": 1}),
        Sample("fast_conv2d_stride2_1x1_bias", (normal(2, 3, 6, 5), normal(2, 3, 1, 1),
                                                normal(2)), kwargs={"stride": 2}),
        Sample("fast_conv2d_stride1_2x2_pad1", (normal(2, 2, 4, 3), normal(3, 2, 2, 2)),
               kwargs={"padding": 1}),
        Sample("fast_conv2d_stride2_3x3_pad0_bias", (normal(2, 2, 6, 7), normal(2, 2, 3, 3),
                                                     normal(2)), kwargs={"stride": 2}),
        Sample("fast_conv2d_chain_on_grids",
               (normal(2, 2, 6, 6), normal(3, 2, 3, 3), normal(2, 3, 3, 3)), call=_chain,
               note="two convolutions: inputs and gradients arriving on grids"),
    ), draw=_draws, torch="torch.nn.functional.conv2d", reference=conv2d_reference,
        reference_grad=conv2d_grad_reference),
]
