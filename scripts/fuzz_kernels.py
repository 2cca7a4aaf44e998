"""Fuzz minires's CUDA kernels, built for the CPU, against their pure-array references.

    python scripts/fuzz_kernels.py [--cases 300] [--seed 0] [--sanitize]

Random geometries for every kernel: odd sizes, non-contiguous inputs (strided and
transposed views), asymmetric strides and paddings, dilation, ties and NaNs inside
max-pooling windows, label smoothing; each case through the kernel (the CUDA source
compiled by ``minires.cuda_kernels.host``) and through the reference it replaces, compared as
``minires.opspec.kernels`` does. Then the 32-bit index arithmetic at its limit: geometries
whose padded image has exactly 2**31 - 1 rows (huge padding and stride, tiny arrays)
run through the kernels and are checked against a definition written as loops, and
one row more must send the helper to its reference.

``--sanitize`` builds the kernels with AddressSanitizer and UndefinedBehaviorSanitizer
and runs the same cases in a fresh Python process started with the sanitizer runtime
preloaded (``minires.cuda_kernels.host.sanitizer_environment()``): an out-of-bounds access or a
signed overflow in the index math then aborts with a report instead of passing.
Exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minires.cuda_kernels as mc  # noqa: E402
from minires.cuda_kernels import _launch, host  # noqa: E402
from minires.ops.geometry import output_size  # noqa: E402
from minires.opspec import kernels as parity  # noqa: E402

INT32_MAX = _launch.INT32_MAX


# --------------------------------------------------------------------------- inputs


def maybe_strided(rng, a):
    """``a``'s values, often in a non-contiguous array: a strided slice of a larger
    array, or a transposed copy transposed back."""
    kind = rng.integers(0, 3)
    if kind == 1 and a.ndim:
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if kind == 2 and a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    return a


def normal(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


def window(rng, max_kernel=5, dilate=True):
    KH, KW = rng.integers(1, max_kernel + 1, 2)
    stride = tuple(int(s) for s in rng.integers(1, 5, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 4, 2)) if dilate else (1, 1)
    padding = (int(rng.integers(0, KH)), int(rng.integers(0, KW)))
    return int(KH), int(KW), stride, padding, dilation


def conv_geometry(rng):
    while True:
        N, C, H, W = (int(v) for v in rng.integers(1, [4, 5, 13, 13]))
        KH, KW, stride, padding, dilation = window(rng)
        if output_size(H, KH, stride[0], padding[0], dilation[0]) >= 1 and \
                output_size(W, KW, stride[1], padding[1], dilation[1]) >= 1:
            return (N, C, H, W), KH, KW, stride, padding, dilation


def random_case(rng):
    """(helper, positional arguments after xp, dtype, label)."""
    dtype = [np.float32, np.float64][rng.integers(0, 2)]
    helper = ["im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
              "batch_norm_backward", "cross_entropy_forward"][rng.integers(0, 6)]
    if helper == "im2col":
        shape, KH, KW, stride, padding, dilation = conv_geometry(rng)
        x = maybe_strided(rng, normal(rng, dtype, *shape))
        return helper, (x, KH, KW, stride, padding, dilation), dtype, \
            f"{shape} k{KH}x{KW} s{stride} p{padding} d{dilation}"
    if helper == "col2im":
        shape, KH, KW, stride, padding, dilation = conv_geometry(rng)
        N, C, H, W = shape
        OH = output_size(H, KH, stride[0], padding[0], dilation[0])
        OW = output_size(W, KW, stride[1], padding[1], dilation[1])
        col = maybe_strided(rng, normal(rng, dtype, C * KH * KW, N * OH * OW))
        return helper, (col, shape, KH, KW, stride, padding, dilation), dtype, \
            f"{shape} k{KH}x{KW} s{stride} p{padding} d{dilation}"
    if helper.startswith("max_pool2d"):
        while True:
            shape = tuple(int(v) for v in rng.integers(1, [4, 4, 12, 12]))
            KH, KW, stride, padding, _ = window(rng, dilate=False)
            if output_size(shape[2], KH, stride[0], padding[0]) >= 1 and \
                    output_size(shape[3], KW, stride[1], padding[1]) >= 1:
                break
        ties = rng.random() < 0.5
        x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
        if rng.random() < 0.2:  # a NaN wins its windows, in both
            x.reshape(-1)[rng.integers(0, x.size)] = np.nan
        label = f"{shape} k{KH}x{KW} s{stride} p{padding}{' ties' if ties else ''}"
        if helper == "max_pool2d_forward":
            return helper, (maybe_strided(rng, x), KH, KW, stride, padding), dtype, label
        from minires.ops.pool import max_pool2d_forward

        y, argmax = max_pool2d_forward.reference(np, x, KH, KW, stride, padding)
        gy = maybe_strided(rng, normal(rng, dtype, *y.shape))
        return helper, (gy, argmax, shape, KH, KW, stride, padding), dtype, label
    if helper == "batch_norm_backward":
        spatial = tuple(int(v) for v in rng.integers(1, 6, rng.integers(0, 3)))
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6))) + spatial
        axes = (0,) + tuple(range(2, len(shape)))
        x = rng.standard_normal(shape) * 3 + 1
        xhat = (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True)
                                                         + 1e-3)
        scale = rng.uniform(0.5, 2, (1, shape[1]) + (1,) * len(spatial))
        training = bool(rng.random() < 0.5)
        return helper, (maybe_strided(rng, normal(rng, dtype, *shape)),
                        maybe_strided(rng, xhat.astype(dtype)), scale.astype(dtype),
                        training), dtype, f"{shape} {'train' if training else 'eval'}"
    N, C = int(rng.integers(1, 10)), int(rng.integers(1, 50))
    scale = float(rng.choice([0.1, 1.0, 30.0]))
    smoothing = float(rng.choice([0.0, 0.1, rng.random()]))
    x = maybe_strided(rng, normal(rng, dtype, N, C) * dtype(scale))
    target = rng.integers(0, C, N).astype(np.int64)
    return "cross_entropy_forward", (x, target, smoothing), dtype, \
        f"{N}x{C} scale {scale} smoothing {smoothing:.2f}"


# --------------------------------------------------------------------------- checks


def fuzz(cases: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    failures = []
    for k in range(cases):
        helper, args, dtype, label = random_case(rng)
        reference = parity.HELPERS[helper].reference(np, *args)
        failure = parity.compare(mc.KERNELS[helper](np, *args), reference, dtype)
        if failure:
            failures.append(f"case {k} {helper} {np.dtype(dtype).name} {label}: {failure}")
    return failures


def im2col_by_definition(x, KH, KW, stride, padding, dilation):
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    col = np.zeros((C * KH * KW, N * OH * OW), dtype=x.dtype)
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                for n in range(N):
                    for oh in range(OH):
                        for ow in range(OW):
                            h, w = oh * SH - PH + i * DH, ow * SW - PW + j * DW
                            if 0 <= h < H and 0 <= w < W:
                                col[(c * KH + i) * KW + j, (n * OH + oh) * OW + ow] = \
                                    x[n, c, h, w]
    return col


def col2im_by_definition(col, x_shape, KH, KW, stride, padding, dilation):
    N, C, H, W = x_shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    gx = np.zeros(x_shape, dtype=col.dtype)
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                for n in range(N):
                    for oh in range(OH):
                        for ow in range(OW):
                            h, w = oh * SH - PH + i * DH, ow * SW - PW + j * DW
                            if 0 <= h < H and 0 <= w < W:
                                gx[n, c, h, w] += col[(c * KH + i) * KW + j,
                                                      (n * OH + oh) * OW + ow]
    return gx


# Padded images of up to INT32_MAX rows or columns (H + 2*PH): the largest the kernels
# take, and dilations of 2**30.
# With a stride that large only a few output rows exist, so the arrays stay tiny while
# ``oh * SH - PH + i * DH`` runs up to the limit.
AT_THE_LIMIT = [
    ((1, 2, 1, 3), 1, 2, (2**30 - 1, 1), (2**30 - 1, 0), (1, 1)),
    ((2, 1, 3, 2), 2, 1, (2**30 - 1, 2**30 - 2), (2**30 - 2, 2**30 - 2), (2**30, 1)),
    ((1, 1, 1, 1), 2, 2, (2**29, 2**29), (2**30 - 1, 2**30 - 1), (2**30 - 1, 2**30 - 1)),
]


def at_the_limit() -> list:
    failures = []
    rng = np.random.default_rng(1)
    for shape, KH, KW, stride, padding, dilation in AT_THE_LIMIT:
        assert shape[2] + 2 * padding[0] <= INT32_MAX and shape[3] + 2 * padding[1] <= INT32_MAX
        N, C, H, W = shape
        OH = output_size(H, KH, stride[0], padding[0], dilation[0])
        OW = output_size(W, KW, stride[1], padding[1], dilation[1])
        launched = []
        for dtype in (np.float32, np.float64):
            x = normal(rng, dtype, *shape)
            col = normal(rng, dtype, C * KH * KW, N * OH * OW)
            for name, got, want in [
                ("im2col", launching(launched, mc.conv.im2col, np, x, KH, KW, stride, padding,
                                     dilation),
                 im2col_by_definition(x, KH, KW, stride, padding, dilation)),
                ("col2im", launching(launched, mc.conv.col2im, np, col, shape, KH, KW, stride,
                                     padding, dilation),
                 col2im_by_definition(col, shape, KH, KW, stride, padding, dilation)),
            ]:
                failure = parity.compare(got, want, dtype)
                if failure:
                    failures.append(f"at the int32 limit, {name} {shape} k{KH}x{KW} "
                                    f"s{stride} p{padding} d{dilation}: {failure}")
        if len(launched) != 4:
            failures.append(f"at the int32 limit {shape} p{padding}: the kernels did not run "
                            f"({launched})")
    return failures


def launching(launched, fn, *args):
    """Call ``fn`` and note whether it launched a kernel."""
    def spy(function, total, args):
        launched.append(function)
        return real(function, total, args)

    module = sys.modules[fn.__module__]
    real = module.launch
    module.launch = spy
    try:
        return fn(*args)
    finally:
        module.launch = real


def past_the_limit() -> list:
    """One row more than the kernels' 32-bit arithmetic can address, or a pooling window
    of more than INT32_MAX offsets: the helper must hand over to its reference (which is
    not run here: it would pad the image to 2**31 rows)."""
    failures = []
    x = np.zeros((1, 1, 2, 2), np.float32)
    big = (2**30, 0)  # 2 + 2 * 2**30 rows = INT32_MAX + 1
    calls = [
        ("im2col", mc.conv, "_im2col", (x, 1, 1, (2**30, 1), big, (1, 1))),
        ("col2im", mc.conv, "_col2im",
         (np.zeros((1, 3 * 2), np.float32), x.shape, 1, 1, (2**30, 1), big, (1, 1))),
        ("max_pool2d_forward", mc.pool, "_max_pool2d_forward",
         (x, 46341, 46341, (1, 1), (23170, 23170))),
        ("max_pool2d_backward", mc.pool, "_max_pool2d_backward",
         (np.zeros((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int64), x.shape,
          46341, 46341, (1, 1), (23170, 23170))),
    ]
    for name, module, attribute, args in calls:
        real = getattr(module, attribute)
        launched = []
        setattr(module, attribute, SimpleNamespace(reference=lambda *a: "reference"))
        try:
            got = launching(launched, getattr(module, name), np, *args)
        finally:
            setattr(module, attribute, real)
        if got != "reference" or launched:
            failures.append(f"past the int32 limit, {name} launched its kernel instead of "
                            "handing over to the reference")
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sanitize", action="store_true",
                        help="AddressSanitizer and UndefinedBehaviorSanitizer (a new process)")
    args = parser.parse_args(argv)
    if host.compiler() is None:
        print("fuzz_kernels: no C++ compiler (g++ or clang++) to build the kernels")
        return 1
    if args.sanitize and not host.sanitizers():
        env = dict(os.environ, **host.sanitizer_environment())
        command = [sys.executable, os.path.abspath(__file__), "--cases", str(args.cases),
                   "--seed", str(args.seed)]
        print(f"fuzz_kernels: under {env['MINIRES_HOST_SANITIZE']} sanitizers "
              f"(LD_PRELOAD={env.get('LD_PRELOAD', '')})", flush=True)
        return subprocess.run(command, env=env).returncode
    _launch.get_function = host.function  # every kernel runs on the CPU
    failures = fuzz(args.cases, args.seed) + at_the_limit() + past_the_limit()
    sanitized = ", ".join(host.sanitizers()) or "no sanitizers"
    for failure in failures:
        print("FAIL", failure)
    print(f"fuzz_kernels ({sanitized}): {args.cases} random cases, {len(AT_THE_LIMIT)} "
          f"geometries at the int32 limit, 4 past it: "
          f"{'all match' if not failures else f'{len(failures)} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
