"""The one seam between minires and its array libraries.

Everything above this file works on "xp" arrays: ``numpy.ndarray`` on the CPU and
``cupy.ndarray`` on a CUDA GPU. The math is written once against the common API of the
two; this module decides which library an array belongs to, moves arrays between
devices, owns the random generators, and lets optional CUDA kernels replace an
array-level helper without a single ``if gpu:`` in the ops.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import zlib

import numpy

try:  # CuPy is optional: minires runs on NumPy alone.
    import cupy

    _cupy_error = None
except Exception as error:  # ImportError, or a CuPy that finds no CUDA library
    cupy = None
    _cupy_error = error


# --------------------------------------------------------------------------- devices


class cuda:
    """``mr.cuda.is_available()`` and friends, as in ``torch.cuda``."""

    @staticmethod
    def is_available() -> bool:
        """True when CuPy finds a GPU and can use it: a tiny kernel compiles (NVRTC) and a
        tiny matrix multiply runs (cuBLAS). Checked once per process;
        ``unavailable_reason()`` says what failed."""
        return _cuda_probe() is None

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why ``is_available()`` is False (naming the missing piece), or None."""
        problem = _cuda_probe()
        return None if problem is None else problem[1]

    @staticmethod
    def device_count() -> int:
        """The number of CUDA GPUs CuPy sees, 0 when none is usable."""
        return cupy.cuda.runtime.getDeviceCount() if cuda.is_available() else 0

    @staticmethod
    def synchronize() -> None:
        """Wait until the current GPU has finished every queued kernel (nothing without one)."""
        if cuda.is_available():
            cupy.cuda.Device().synchronize()


# A CuPy wheel installs and imports without the CUDA libraries it loads later: with only
# the NVIDIA driver, getDeviceCount() works and the first kernel (NVRTC compiles it) or
# the first matrix multiply (cuBLAS) dies. So availability means one of each, once.
_PROBE_KERNEL = r"""
extern "C" __global__ void minires_probe(float* x) { x[threadIdx.x] += 1.0f; }
"""
_CUDA_LIBRARIES_HINT = (
    "Install CuPy with the CUDA libraries it needs: pip install 'minires[cuda12]' (or "
    "[cuda13]) brings cupy-cuda12x[ctk], whose [ctk] extra pulls NVIDIA's library wheels; "
    "or install the CUDA Toolkit. Use device='cpu' meanwhile.")


@functools.lru_cache(maxsize=None)
def _cuda_probe():
    """None when CUDA works, else (what is missing, a message naming it): 'cupy', 'gpu',
    'nvrtc' or 'cublas'."""
    if cupy is None:
        return ("cupy", "CuPy is not installed or failed to import "
                f"({_cupy_error}). Install the extra that matches your CUDA version: "
                "pip install 'minires[cuda12]' or pip install 'minires[cuda13]'.")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # no driver, no device: CUDARuntimeError
        count, why = 0, f"{type(error).__name__}: {error}"
    else:
        why = "getDeviceCount() is 0"
    if count < 1:
        return ("gpu", f"CuPy finds no GPU ({why}). Check the NVIDIA driver with "
                "nvidia-smi, or use device='cpu'.")
    try:
        x = cupy.zeros(1, dtype=numpy.float32)
        kernel = cupy.RawModule(code=_PROBE_KERNEL).get_function("minires_probe")
        kernel((1,), (1,), (x,))
        cupy.cuda.Device().synchronize()  # a launch fails asynchronously: wait for it
    except Exception as error:
        return ("nvrtc", "CuPy finds a GPU but cannot compile CUDA kernels: NVRTC, CUDA's "
                f"runtime compiler (libnvrtc), failed ({type(error).__name__}: {error}). "
                + _CUDA_LIBRARIES_HINT)
    try:
        a = cupy.ones((2, 2), dtype=numpy.float32)
        a @ a
        cupy.cuda.Device().synchronize()
    except Exception as error:
        return ("cublas", "CuPy finds a GPU but cannot multiply matrices: cuBLAS "
                f"(libcublas) failed ({type(error).__name__}: {error}). "
                + _CUDA_LIBRARIES_HINT)
    return None


def _require_cuda() -> None:
    problem = _cuda_probe()
    if problem is not None:
        raise RuntimeError(f"CUDA was asked for, but {problem[1]}")


def normalize_device(device) -> str:
    """'cpu', 'cuda', 'cuda:0' (or a Tensor's ``.device``) -> 'cpu' or 'cuda'."""
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def is_cupy_array(array) -> bool:
    return cupy is not None and isinstance(array, cupy.ndarray)


def may_share_memory(a, b) -> bool:
    """Whether two arrays may overlap in memory (address ranges only: cheap). Arrays on
    different devices never do (an op such as ``.cpu()`` has one on each)."""
    if is_cupy_array(a) != is_cupy_array(b):
        return False
    return bool(array_module(a).may_share_memory(a, b))


def device_of(array) -> str:
    """The device an array lives on: 'cuda' for CuPy arrays, else 'cpu'."""
    return "cuda" if is_cupy_array(array) else "cpu"


def array_module(*arrays):
    """numpy or cupy: the library of the given arrays (numpy when none is a CuPy array)."""
    for a in arrays:
        if is_cupy_array(a):
            return cupy
    return numpy


def to_device(array, device):
    """Copy ``array`` to ``device`` ('cpu' or 'cuda'); returns it unchanged if already there."""
    device = normalize_device(device)
    if device == "cuda":
        _require_cuda()
        return cupy.asarray(array)
    if is_cupy_array(array):
        check_pending()  # the host waits for the GPU here anyway
        return cupy.asnumpy(array)
    return numpy.asarray(array)


def to_numpy(array) -> numpy.ndarray:
    """``array`` on the host (raising first any value check still pending, see below)."""
    return to_device(array, "cpu")


def host_floats(*scalars) -> list:
    """Several 0-d arrays (or numbers) as Python floats, read from the device in one
    transfer: the training loop's one host sync per logging step."""
    xp = array_module(*scalars)
    return [float(v) for v in to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64)
                                                  for v in scalars]))]


# --------------------------------------------------------------------- value checks
# Some errors depend on values, not shapes: a class index out of range, for example.
# Reading a value that lives on a GPU makes the host wait for every kernel queued
# before it, so there an op must not look at its inputs' values on every call. It
# queues the check as a 0-d boolean on the device instead, and the check runs where
# minires reads from the device anyway (to_device to the CPU: Tensor.item(), .cpu(),
# .tolist(), the training loop's log line). On the CPU the check runs at once.

_pending_checks = []  # (0-d boolean device array, function giving the message)
_MAX_PENDING = 64  # a loop that never reads back still checks every 64 calls


def check_value(bad, message) -> None:
    """Raise ``ValueError(message())`` if the 0-d boolean array ``bad`` is true: at once
    on the CPU, at the next read from the device on a GPU. ``message`` is a function, so
    its text (which may read values) is built only for an error."""
    if device_of(bad) == "cpu":
        if bool(bad):
            raise ValueError(message())
        return
    _pending_checks.append((bad, message))
    if len(_pending_checks) >= _MAX_PENDING:
        check_pending()


def check_pending() -> None:
    """Run the queued value checks (one transfer for all of them) and raise the first
    that failed."""
    if not _pending_checks:
        return
    checks = list(_pending_checks)
    _pending_checks.clear()
    xp = array_module(*(bad for bad, _ in checks))
    failed = to_device(xp.stack([bad for bad, _ in checks]), "cpu")
    for (_, message), bad in zip(checks, failed):
        if bad:
            raise ValueError(message() + " (a check of values on the GPU, raised at the "
                             "next read from the device, so possibly a few calls later)")


# --------------------------------------------------------------------------- shims
# The few places where numpy and cupy spell the same thing differently.


def quiet_float_errors():
    """A context in which an intended 0/0 gives NaN without a warning: NumPy warns,
    CuPy never does (and has no errstate of its own)."""
    return numpy.errstate(invalid="ignore", divide="ignore")


def as_strided(xp, array, shape, strides):
    """A strided view of ``array`` (no copy). Strides are in bytes, as in numpy."""
    return xp.lib.stride_tricks.as_strided(array, shape=shape, strides=strides)


def scatter_add(xp, target, indices, values):
    """``target[indices] += values`` where repeated indices add up (numpy's ``add.at``)."""
    if xp is numpy:
        numpy.add.at(target, indices, values)
    else:
        import cupyx

        cupyx.scatter_add(target, indices, values)


# --------------------------------------------------------------------------- random
# Two kinds of generator, both with the ``numpy.random.Generator`` API:
#
# * the global generators, one per library, reseeded by ``manual_seed``: weight
#   initialisation, ``mr.randn``, transforms called by hand. NumPy's (PCG64) state is a
#   few integers and is saved as it is. CuPy's generators keep their state on the GPU
#   with no API to read it back, so minires' global CuPy generator is a sequence of
#   generators instead: draw number n comes from a fresh Philox generator seeded with
#   (seed, n), and its whole state is the counter n.
# * keyed streams: inside ``with random_stream("tag", a, b, ...)`` every draw comes from
#   generators seeded with that key alone. The DataLoader draws batch b of epoch e's
#   augmentation in the stream ("DataLoader", seed, e, b) and the training loop runs
#   step s of epoch e (forward, backward, optimizer step) in ("step", seed, e, s): the
#   random numbers of a step depend only on where the run stands, so resuming at a
#   step boundary needs no generator state at all, on the CPU and on the GPU alike,
#   and nothing is read back from the device to get there.
#
# Philox is counter-based: seeding it is one cheap kernel, where seeding CuPy's default
# XORWOW generator skips every state ahead and costs far more, once per step. CuPy hands
# cuRAND only 32 bits of a seed (``SeedSequence(entropy).generate_state(1, uint32)``), so
# two keys share their numbers with probability 2**-32: in a run of 65,536 steps, some
# two steps draw the same dropout masks with probability about 0.4 (the birthday bound).
# NumPy's PCG64 keeps the whole SeedSequence.

_generators: dict = {}
_seed = None
_cupy_draws = 0  # draws taken from the global CuPy generator since manual_seed
_streams: list = []  # the keyed streams entered and not yet left, innermost last
_CUPY_STATES = 1 << 16  # parallel Philox states per CuPy generator: enough to fill a GPU


def manual_seed(seed: int) -> None:
    """Seed every random generator minires uses (CPU and, if present, GPU)."""
    global _seed, _cupy_draws
    if isinstance(seed, bool) or not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative integer, got {seed!r}")
    _seed = int(seed)
    _cupy_draws = 0
    _generators.clear()


def initial_seed():
    """The seed of the last ``manual_seed`` (None if it was never called)."""
    return _seed


def _new_generator(xp, entropy):
    """A fresh generator of library ``xp`` seeded with ``entropy`` (a list of ints)."""
    seeds = numpy.random.SeedSequence(entropy)
    if xp is numpy:
        return numpy.random.Generator(numpy.random.PCG64(seeds))
    return xp.random.Generator(xp.random.Philox4x3210(seeds, size=_CUPY_STATES))


class _CountedGenerator:
    """The global CuPy generator: every draw from a fresh generator seeded with (seed, n),
    n counting the draws, so ``get_rng_state`` can save it as one number."""

    def __init__(self, xp):
        self.xp = xp

    def __getattr__(self, name):
        def draw(*args, **kwargs):
            global _cupy_draws
            generator = _new_generator(self.xp, [*_global_entropy(), _cupy_draws])
            _cupy_draws += 1
            return getattr(generator, name)(*args, **kwargs)

        return draw


_unseeded_entropy = None


def _global_entropy() -> list:
    """The global generators' seed as entropy; fresh OS entropy (once) when unseeded."""
    global _unseeded_entropy
    if _seed is not None:
        return [_seed]
    if _unseeded_entropy is None:
        _unseeded_entropy = numpy.random.SeedSequence().entropy
    return [_unseeded_entropy]


def generator(xp):
    """The random generator for arrays of library ``xp`` (``numpy.random.Generator`` API):
    the innermost keyed stream's if one is open, else the global one."""
    key = xp.__name__
    if _streams:
        stream = _streams[-1]
        if key not in stream["generators"]:
            stream["generators"][key] = _new_generator(xp, stream["entropy"])
        return stream["generators"][key]
    if key not in _generators:
        _generators[key] = (numpy.random.default_rng(_seed) if xp is numpy
                            else _CountedGenerator(xp))
    return _generators[key]


def _stream_entropy(tag: str, key) -> list:
    entropy = [zlib.crc32(tag.encode())]  # tells apart streams of equal numbers
    for k in key:
        if isinstance(k, bool) or not isinstance(k, (int, numpy.integer)) or k < 0:
            raise ValueError(f"random_stream({tag!r}, ...): the key must be non-negative "
                             f"integers, got {tuple(key)!r}")
        entropy.append(int(k))
    return entropy


@contextlib.contextmanager
def random_stream(tag: str, *key):
    """Draw every random number inside the block from generators seeded with
    ``(tag, *key)`` alone (on each library, created when first asked for), leaving the
    global generators untouched: the same key always gives the same numbers.

    ``with random_stream("step", seed, epoch, step): ...`` is how the training loop makes
    a step's dropout masks a function of its position in the run.
    """
    _streams.append({"entropy": _stream_entropy(tag, key), "generators": {}})
    try:
        yield
    finally:
        _streams.pop()


def get_rng_state() -> dict:
    """The global generators' state as plain Python values (for checkpoints): the seed,
    NumPy's PCG64 state and the number of draws taken from the CuPy generator."""
    return {"seed": _seed, "numpy": generator(numpy).bit_generator.state,
            "cupy_draws": _cupy_draws}


def set_rng_state(state: dict) -> None:
    """Put the global generators back where ``get_rng_state`` found them."""
    global _seed, _cupy_draws
    _seed = state["seed"]
    _generators.clear()
    generator(numpy).bit_generator.state = state["numpy"]
    _cupy_draws = int(state.get("cupy_draws", 0))  # absent in older checkpoints


# --------------------------------------------------------------------------- kernels
# An op calls an array-level helper such as ``im2col(xp, x, ...)``. A CUDA kernel may
# register a faster version of that helper; the dispatcher uses it for CuPy arrays
# when kernels are on, and the pure-xp reference otherwise.

_kernels: dict = {}
_kernels_enabled = os.environ.get("MINIRES_KERNELS", "1") != "0"


def use_kernels(enabled: bool = True) -> bool:
    """Turn the registered CUDA kernels on or off (off: the pure-xp references run).

    Returns the previous setting, so code that switches them for a while puts back
    what it found (``MINIRES_KERNELS=0`` included) rather than switching them on::

        previous = mr.use_kernels(False)
        try:
            ...
        finally:
            mr.use_kernels(previous)
    """
    global _kernels_enabled
    previous, _kernels_enabled = _kernels_enabled, bool(enabled)
    return previous


def kernels_enabled() -> bool:
    return _kernels_enabled


def register_kernel(name: str, fn) -> None:
    """Register ``fn`` as the CuPy implementation of the overridable helper ``name``."""
    _kernels[name] = fn


def overridable(reference):
    """Decorate a pure-xp helper ``f(xp, ...)`` so a registered CUDA kernel can replace it.

    The undecorated function stays reachable as ``helper.reference`` so tests can compare
    a kernel with the code it replaces.
    """
    name = reference.__name__

    @functools.wraps(reference)
    def dispatch(xp, *args, **kwargs):
        if xp is not numpy and _kernels_enabled and name in _kernels:
            return _kernels[name](xp, *args, **kwargs)
        return reference(xp, *args, **kwargs)

    dispatch.reference = reference
    return dispatch


# --------------------------------------------------------------------------- CPU fast path
# minires.ops.channel_major keeps activations channel-major on a padded grid, which makes
# im2col a few block copies: on the CPU that beats the plain NCHW path (see
# docs/fast_cpu.md). On CuPy the plain path's CUDA kernels (minires.cuda_kernels) are the fast
# route, so the layers stay on it there.


def prefers_channel_major(xp) -> bool:
    """Whether layers should take the channel-major fast path for arrays of ``xp``."""
    return xp is numpy


def is_host_module(xp) -> bool:
    """Whether arrays of ``xp`` live in host memory (NumPy), where the CPU threads of
    ``minires.cpu_threads`` can work on them."""
    return xp is numpy


# --------------------------------------------------------------------------- moved out
# The float32 matmul precision (TF32, bfloat16) is minires.precision, the CPU thread
# pool of the fast path minires.cpu_threads. Their public names stay reachable as
# ``backend.<name>``, looked up on first use, so that backend imports nothing of minires.

_MOVED = {
    "MATMUL_PRECISIONS": "precision",
    "get_float32_matmul_precision": "precision",
    "set_float32_matmul_precision": "precision",
    "matmul": "precision",
    "round_mantissa": "precision",
    "set_cpu_threads": "cpu_threads",
    "parallel_rows": "cpu_threads",
}


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
