# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · The GPU with CuPy, and writing a kernel
#
# **What you will build.** You will run the same minires code on the CPU and on an
# NVIDIA GPU and compare results and speed, then write two CUDA kernels from Python with
# CuPy: a one-line `ElementwiseKernel` (ReLU's backward) with its `RawKernel` twin, and
# an im2col kernel that builds tutorial 05's patch matrix with one GPU thread per
# entry. Each kernel is checked against the pure-array reference it must match, and the
# im2col kernel is plugged into `F.conv2d` through minires's kernel dispatcher. Last,
# you will see what TF32, the tensor cores' fast float32 matrix math, rounds away.
#
# **Which minires files it re-derives.** `minires/backend.py` (the one NumPy/CuPy seam:
# `array_module`, `to_device`, the `overridable` dispatcher and `use_kernels`) and
# `minires/cuda_kernels/conv.py`, minires's own im2col kernel, which overrides the pure-array
# helper `minires.ops.conv.im2col` on the GPU.
#
# **No GPU?** Everything that needs one is skipped with a message; the kernel sources
# are still shown, and the kernel's index arithmetic is still checked on the CPU by
# simulating its threads with NumPy. To run the GPU parts: a machine with an NVIDIA
# GPU, and `pip install 'minires[cuda12]'` (or `[cuda13]`, matching your CUDA version).

# %%
import time

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.cuda_kernels
import minires.nn.functional as F
from minires import backend, precision
from minires.ops.conv import im2col
from minires.ops.geometry import output_size

GPU = mr.cuda.is_available()
cp = backend.cupy  # the cupy module, or None when CuPy is not installed
if GPU:
    print(f"GPU: found {mr.cuda.device_count()} CUDA device(s); CuPy {cp.__version__}")
else:
    print("GPU: no CUDA GPU (or no CuPy) found: the GPU parts of this notebook are skipped, "
          "the kernel sources are shown and their index arithmetic is checked on the CPU")

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. One code path, two array libraries
#
# CuPy copies NumPy's API: `cupy.exp`, `cupy.zeros`, slicing, broadcasting, `@` all
# behave the same, on arrays that live in GPU memory. minires exploits that: a tensor
# is on the GPU exactly when its `.data` is a `cupy.ndarray`, and every op asks
# `backend.array_module(*arrays)` for the right library, once, in `Function.apply`,
# handing it to the op as `ctx.xp`. There is no `if gpu:` anywhere in the math.

# %%
x_cpu = mr.randn(3, 4)
print("array_module of a CPU tensor's data:", backend.array_module(x_cpu.data).__name__,
      "| device:", x_cpu.device)
if GPU:
    x_gpu = x_cpu.to("cuda")
    print("array_module of a GPU tensor's data:", backend.array_module(x_gpu.data).__name__,
          "| device:", x_gpu.device)
    try:
        x_cpu + x_gpu
    except RuntimeError as error:  # mixing devices is an error, as in PyTorch
        print("RuntimeError:", str(error)[:90], "...")
else:
    print("(skipped: moving a tensor to the GPU)")

# %% [markdown]
# ## 2. The same computation on both devices
#
# A convolution forward and backward, once on the CPU and once on the GPU, from the
# same inputs. Floating-point sums run in a different order on the two devices, so the
# results agree to float32 rounding, not bit for bit.

# %%
x_np = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
w_np = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
gy_np = rng.standard_normal((8, 32, 32, 32)).astype(np.float32)


def conv_forward_backward(device):
    x = mr.tensor(x_np, device=device, requires_grad=True)
    w = mr.tensor(w_np, device=device, requires_grad=True)
    y = F.relu(F.conv2d(x, w, padding=1))
    y.backward(mr.tensor(gy_np, device=device))
    return [backend.to_numpy(a) for a in (y.data, x.grad.data, w.grad.data)]


cpu_results = conv_forward_backward("cpu")
if GPU:
    gpu_results = conv_forward_backward("cuda")
    for name, a, b in zip(["y", "gx", "gw"], cpu_results, gpu_results):
        print(f"{name}: max |cpu - gpu| / max |cpu| = {np.abs(a - b).max() / np.abs(a).max():.1e}")
else:
    print("(skipped: the same convolution on the GPU)")

# %% [markdown]
# ## 3. How much faster?
#
# One training step of ResNet-20 (forward, backward, SGD update) for a batch of CIFAR
# images, on each device. GPU work is *asynchronous*: Python queues kernels and moves
# on, so a timing must wait for the GPU to finish (`mr.cuda.synchronize()`). The first
# steps on a GPU also compile kernels and warm up memory pools, so we time later ones.


# %%
def seconds_per_step(device, batch, steps):
    mr.manual_seed(0)
    model = mr.models.resnet20().to(device)
    optimizer = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = mr.randn(batch, 3, 32, 32, device=device)
    labels = mr.randint(0, 10, (batch,), device=device)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up: kernel compilation, memory pools
    mr.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    mr.cuda.synchronize()
    return (time.perf_counter() - start) / steps


batch = _common.pick(128, 16)
timings = {"cpu": seconds_per_step("cpu", batch, steps=_common.pick(3, 1))}
if GPU:
    timings["cuda"] = seconds_per_step("cuda", batch, steps=_common.pick(20, 3))
for device, seconds in timings.items():
    print(f"ResNet-20 training step, batch {batch}, {device:4s}: {seconds * 1e3:8.1f} ms "
          f"({batch / seconds:7.0f} images/s)")
if GPU:
    print(f"the GPU is {timings['cpu'] / timings['cuda']:.0f}x faster here")
    fig, ax = plt.subplots(figsize=(5, 2.2))
    ax.barh(list(timings), [batch / s for s in timings.values()])
    ax.set(xlabel="images per second", title=f"ResNet-20 training, batch {batch}")
    _common.show(fig, "09_cpu_vs_gpu")
else:
    print("(skipped: the same step on the GPU)")

# %% [markdown]
# ## 4. A first kernel: `ElementwiseKernel`
#
# CuPy's built-in functions are kernels already; writing your own pays off when it
# *fuses* several steps into one pass over memory. ReLU's backward in minires is
# `gy * mask`: with CuPy that is one kernel, but it needs the mask array saved from the
# forward pass. A custom kernel can read `x` directly and skip the mask.
#
# An `ElementwiseKernel` is declared with its inputs, its outputs and the body of the
# loop in CUDA C++; CuPy writes the loop, launches one thread per element, handles
# broadcasting and instantiates `T` for each dtype it is called with:

# %%
RELU_BACKWARD_ARGS = ("T gy, T x", "T gx", "gx = x > (T)0 ? gy : (T)0", "relu_backward")
print("ElementwiseKernel(", ", ".join(repr(a) for a in RELU_BACKWARD_ARGS), ")")

# %% [markdown]
# `RawKernel` is the same thing without the help: you write the whole `__global__`
# function, compute each thread's element index from its block and thread number, and
# choose the launch grid yourself. It is what you need for anything that is not one
# element in, one element out; `minires/cuda_kernels/` writes all its kernels this way (as C++
# templates, so one source serves float32 and float64).

# %%
RELU_BACKWARD_RAW = r"""
extern "C" __global__
void relu_backward_raw(const float* gy, const float* x, float* gx, const int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;  // this thread's element
    if (i < n)                                      // the last block may run past the end
        gx[i] = x[i] > 0.0f ? gy[i] : 0.0f;
}
"""
print(RELU_BACKWARD_RAW)


# %%
def relu_backward_reference(xp, gy, x):
    """The pure-array version: what both kernels must reproduce exactly."""
    return gy * (x > 0)


if GPU:
    relu_backward_ew = cp.ElementwiseKernel(*RELU_BACKWARD_ARGS)
    relu_backward_raw = cp.RawKernel(RELU_BACKWARD_RAW, "relu_backward_raw")
    gy = cp.asarray(rng.standard_normal(1_000_000).astype(np.float32))
    x = cp.asarray(rng.standard_normal(1_000_000).astype(np.float32))
    expected = relu_backward_reference(cp, gy, x)
    out_ew = relu_backward_ew(gy, x)
    out_raw = cp.empty_like(x)
    threads = 256
    relu_backward_raw(((x.size + threads - 1) // threads,), (threads,),
                      (gy, x, out_raw, np.int32(x.size)))
    print("ElementwiseKernel == reference:", bool((out_ew == expected).all()))
    print("RawKernel == reference:        ", bool((out_raw == expected).all()))
else:
    print("(skipped: compiling and running the ReLU kernels)")

# %% [markdown]
# ## 5. A real kernel: im2col
#
# On a GPU, tutorial 05's strided-view im2col is a gather that CuPy runs as a generic
# copy kernel. A dedicated kernel runs one thread per entry of the patch matrix `col`,
# shape `(C·KH·KW, N·OH·OW)`. Each thread turns its flat index `i` back into
# coordinates `(c, ki, kj)` (the row) and `(n, oh, ow)` (the column), works out which
# input pixel that entry copies, and reads it, or writes 0 where the window hangs over
# the padding. Neighbouring threads handle neighbouring columns (`ow` varies fastest),
# so their memory writes coalesce.

# %%
IM2COL_ARGS = (
    "raw T x, int32 N, int32 C, int32 H, int32 W, int32 KH, int32 KW, int32 OH, int32 OW, "
    "int32 SH, int32 SW, int32 PH, int32 PW, int32 DH, int32 DW",
    "T col",
    """
    // i: this thread's entry of col, viewed as (C, KH, KW, N, OH, OW)
    int ow = i % OW;
    int oh = i / OW % OH;
    int n  = i / (OW * OH) % N;
    int kj = i / (OW * OH * N) % KW;
    int ki = i / (OW * OH * N * KW) % KH;
    int c  = i / (OW * OH * N * KW * KH);
    int h = oh * SH - PH + ki * DH;  // the input pixel it copies (unpadded coordinates)
    int w = ow * SW - PW + kj * DW;
    bool inside = 0 <= h && h < H && 0 <= w && w < W;
    col = inside ? x[((n * C + c) * H + h) * W + w] : (T)0;
    """,
    "tutorial_im2col",
)
print(IM2COL_ARGS[2])

# %% [markdown]
# Before running this on a GPU, check the arithmetic on the CPU. NumPy can play "all
# threads at once": `i = np.arange(size)` is every thread's index, and the kernel body
# becomes whole-array expressions. Index bugs (a swapped `KH`/`KW`, a missing `% N`)
# show up here, where they are easy to debug, rather than as garbage on the GPU.
# (minires goes one step further for its own kernels: `minires/cuda_kernels/host.py` compiles
# the very same CUDA source with a C++ compiler and runs its threads one by one on the
# CPU, so the tests check the real kernel code on machines without a GPU.)


# %%
def im2col_simulated(x, KH, KW, stride, padding, dilation=(1, 1)):
    """The kernel body above, run by NumPy for every thread index at once."""
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    i = np.arange(C * KH * KW * N * OH * OW)  # one entry per GPU thread
    ow, oh, n = i % OW, i // OW % OH, i // (OW * OH) % N
    kj, ki = i // (OW * OH * N) % KW, i // (OW * OH * N * KW) % KH
    c = i // (OW * OH * N * KW * KH)
    h, w = oh * SH - PH + ki * DH, ow * SW - PW + kj * DW
    inside = (0 <= h) & (h < H) & (0 <= w) & (w < W)
    source = np.where(inside, ((n * C + c) * H + h) * W + w, 0)  # a safe index outside
    col = np.where(inside, x.reshape(-1)[source], 0).astype(x.dtype)
    return col.reshape(C * KH * KW, N * OH * OW)


settings = [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1)),
            ((1, 1), (2, 2), (0, 0), (1, 1)), ((3, 2), (1, 2), (2, 0), (2, 1))]
x_small = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
for (KH, KW), stride, padding, dilation in settings:
    reference = im2col.reference(np, x_small, KH, KW, stride, padding, dilation)
    simulated = im2col_simulated(x_small, KH, KW, stride, padding, dilation)
    assert np.array_equal(reference, simulated)
print(f"simulated threads: the kernel's index arithmetic matches minires.ops.conv.im2col "
      f"in all {len(settings)} settings (kernel, stride, padding, dilation)")

# %% [markdown]
# ## 6. Plugging a kernel into minires
#
# `im2col` in `minires/ops/conv.py` is decorated with `@overridable` (from
# `minires/backend.py`). The decorator turns it into a dispatcher: for CuPy arrays,
# when kernels are enabled and a kernel is registered under the name `"im2col"`, it
# calls the kernel; otherwise the pure-array reference, which stays reachable as
# `im2col.reference`. So a kernel needs the reference's signature,
# `fn(xp, x, KH, KW, stride, padding, dilation)`, and one call to
# `backend.register_kernel("im2col", fn)`. `mr.use_kernels(False)` (or the
# environment variable `MINIRES_KERNELS=0`) switches every kernel off, which is how you
# find out whether a wrong result comes from a kernel.
#
# Importing `minires.cuda_kernels` (done at the top of this notebook) registers minires's own
# kernels (`minires.cuda_kernels.KERNELS`) when CuPy is installed. The cell below replaces its
# im2col kernel with ours, checks `F.conv2d` with kernels on and off, times the three
# versions of im2col, and puts minires's kernel back.


# %%
def im2col_tutorial_kernel(xp, x, KH, KW, stride, padding, dilation=(1, 1)):
    N, C, H, W = x.shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = output_size(H, KH, SH, PH, DH), output_size(W, KW, SW, PW, DW)
    col = xp.empty((C * KH * KW, N * OH * OW), dtype=x.dtype)
    kernel(xp.ascontiguousarray(x), N, C, H, W, KH, KW, OH, OW, SH, SW, PH, PW, DH, DW, col)
    return col


def timed(fn, repeat=20):
    fn()
    mr.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    mr.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


if GPU:
    kernel = cp.ElementwiseKernel(*IM2COL_ARGS)
    x_gpu = cp.asarray(x_small)
    for (KH, KW), stride, padding, dilation in settings:
        ours = im2col_tutorial_kernel(cp, x_gpu, KH, KW, stride, padding, dilation)
        assert bool((ours == im2col.reference(cp, x_gpu, KH, KW, stride, padding,
                                              dilation)).all())
    print(f"GPU kernel == pure-xp reference in all {len(settings)} settings")

    backend.register_kernel("im2col", im2col_tutorial_kernel)
    results = {}
    for enabled in (True, False):
        mr.use_kernels(enabled)
        results[enabled] = conv_forward_backward("cuda")
    mr.use_kernels(True)
    worst = max(float(np.abs(a - b).max() / np.abs(b).max())
                for a, b in zip(results[True], results[False]))
    print(f"F.conv2d forward and backward, kernels on vs off: max relative difference "
          f"{worst:.1e}")
    assert worst < 1e-5

    backend.register_kernel("im2col", minires.cuda_kernels.KERNELS["im2col"])  # minires's own again

    big = cp.asarray(rng.standard_normal((128, 16, 32, 32)).astype(np.float32))
    args = (3, 3, (1, 1), (1, 1), (1, 1))
    versions = {"pure-xp reference": im2col.reference,
                "tutorial kernel": im2col_tutorial_kernel,
                "minires.cuda_kernels kernel": minires.cuda_kernels.KERNELS["im2col"]}
    for name, fn in versions.items():
        print(f"im2col of a (128, 16, 32, 32) batch, {name:20s} "
              f"{timed(lambda fn=fn: fn(cp, big, *args)) * 1e3:7.3f} ms")
else:
    print("GPU parts skipped: compile the kernel with cupy.ElementwiseKernel(*IM2COL_ARGS), "
          "compare it with im2col.reference on the GPU, register it with "
          "backend.register_kernel('im2col', im2col_tutorial_kernel)")

# %% [markdown]
# Whatever the timing on your GPU, the pattern is the point: a kernel is an
# optimisation of a helper that already has a correct, readable, tested reference, and
# a test (here the `assert`, in minires `tests/`) compares the two on the same inputs.
#
# ## 7. TF32: trading mantissa bits for speed
#
# A float32 number has 23 mantissa bits. The tensor cores of recent NVIDIA GPUs (compute
# capability 8.0 and later) multiply float32 matrices several times faster if each
# input keeps only 10 of them, TF32, and the products are still summed in float32.
# `mr.set_float32_matmul_precision("high")` allows it, as in PyTorch. Where there are no
# tensor cores, minires rounds the inputs itself (`precision.round_mantissa`), so the
# cost in accuracy can be seen on any machine:

# %%
x = np.array([1.0, 1 + 2.0**-12, 1 + 2.0**-10, np.pi], dtype=np.float32)
print("float32:", x.tolist())
print("TF32:   ", precision.round_mantissa(x, 10).tolist())  # 1 + 2**-12 becomes 1.0

a64, b64 = rng.standard_normal((256, 512)), rng.standard_normal((512, 256))
device = "cuda" if GPU else "cpu"
a32, b32 = mr.tensor(a64.astype(np.float32), device=device), \
    mr.tensor(b64.astype(np.float32), device=device)
for setting in ("highest", "high"):
    mr.set_float32_matmul_precision(setting)
    error = np.abs((a32 @ b32).cpu().numpy() - a64 @ b64).max() / np.abs(a64 @ b64).max()
    print(f"{setting:8s} ({'float32' if setting == 'highest' else 'TF32'}) "
          f"on {device}: relative error {error:.1e}")
mr.set_float32_matmul_precision("highest")  # the default again
assert 1e-5 < error < 1e-3

# %% [markdown]
# About three decimal digits are gone, and gradient descent rarely notices:
# `benchmarks/matmul_precision.py` trains the same network at each precision and
# prints the errors, the step times and the accuracies (docs/results.md has a run).
#
# ## Exercises
#
# 1. Write `col2im` as a kernel. The obvious version, one thread per `col` entry adding
#    into the image, needs `atomicAdd`, and float atomics make the result depend on
#    thread timing. Write it instead as a *gather*: one thread per image pixel, summing
#    the `col` entries copied from it (simulate it with NumPy first).
# 2. Fuse BatchNorm's eval-mode forward, `y = (x - mean) / sqrt(var + eps) * w + b`, into
#    one `ElementwiseKernel` with per-channel inputs broadcast from shape `(1, C, 1, 1)`.
# 3. Time `relu_backward_ew` against `gy * (x > 0)` on arrays of 10³ to 10⁸ elements.
#    Where does the custom kernel start to pay off, and why not below that size?
# 4. Break the kernel on purpose (swap `KH` and `KW` in the index arithmetic) and watch
#    which of the four settings in section 5 catches it. Which settings would you add?
# 5. On a GPU, time `seconds_per_step("cuda", 128, 20)` from section 3 with the
#    precision at "highest" and at "high". How much faster is TF32, and why does the
#    speed-up of a whole step fall short of the speed-up of a matrix multiply?
# 6. Train ResNet-20 for one epoch of the CIFAR sample on the GPU with
#    `minires train --model resnet20 --dataset cifar10-sample --epochs 1 --device cuda`
#    and compare the images/s it reports with the CPU.
