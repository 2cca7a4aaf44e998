"""The one seam between minires and its array libraries.

Everything above this file works on "xp" arrays: ``numpy.ndarray`` on the CPU and
``cupy.ndarray`` on a CUDA GPU. The math is written once against the common API of the
two; this module decides which library an array belongs to, moves arrays between
devices, owns the random generators, and lets optional CUDA kernels replace an
array-level helper without a single ``if gpu:`` in the ops.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import threading
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


# ------------------------------------------------------------- matmul precision
# NVIDIA GPUs of compute capability 8.0 and later (A100, H100) multiply float32 matrices
# several times faster on their tensor cores in TF32 ("TensorFloat-32"): each input keeps
# float32's 8 exponent bits but only 10 of its 23 mantissa bits, and the products are
# summed in float32. As in PyTorch this is off by default, and it touches float32 matrix
# multiplies only (matmul, linear, conv2d's GEMMs), never float64 and never the sums of
# BatchNorm or the losses. Every such multiply in minires.ops goes through ``matmul``.
#
# Where cuBLAS cannot do it (NumPy arrays, older GPUs) minires rounds both inputs itself
# and multiplies them in float32: the same loss of precision without the speed-up, so
# its effect on accuracy can be studied on any machine.

# mantissa bits each float32 input keeps, by the names of torch.set_float32_matmul_precision
MATMUL_PRECISIONS = {
    "highest": 23,  # float32: nothing is rounded
    "high": 10,     # TF32
    "medium": 7,    # bfloat16 (on the GPU: rounded by minires, then multiplied in TF32)
}
_matmul_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """How float32 matrix multiplies round their inputs: 'highest' (float32, the
    default), 'high' (TF32) or 'medium' (bfloat16), as ``torch.set_float32_matmul_precision``."""
    global _matmul_precision
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"set_float32_matmul_precision: expected one of "
                         f"{', '.join(map(repr, MATMUL_PRECISIONS))}, got {precision!r}")
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    """The precision of float32 matrix multiplies: 'highest', 'high' or 'medium'
    (see ``set_float32_matmul_precision``)."""
    return _matmul_precision


def round_mantissa(array, bits: int):
    """float32 ``array`` rounded to the nearest values with only ``bits`` mantissa bits,
    ties away from zero (like PTX's ``cvt.rna.tf32.f32``), still float32: what a TF32
    (10 bits) or bfloat16 (7 bits) input keeps of each number."""
    xp = array_module(array)
    if array.dtype != numpy.float32:
        raise TypeError(f"round_mantissa: expected a float32 array, got {array.dtype}")
    drop = 23 - bits  # low mantissa bits to clear
    # on the bits, sign apart: add half of the last kept bit, then clear the dropped
    # bits; a carry into the exponent is the right way to round up (1.11..1 -> 10.0)
    rounded = xp.ascontiguousarray(array).view(xp.uint32) + numpy.uint32(1 << (drop - 1))
    rounded &= numpy.uint32((0xFFFFFFFF >> drop) << drop)
    rounded = rounded.view(xp.float32)
    # a NaN's payload could carry into infinity or the sign bit: NaNs stay as they are
    xp.copyto(rounded, array, where=xp.isnan(array))
    return rounded


@functools.lru_cache(maxsize=None)
def _tf32_tensor_cores(device_id: int) -> bool:
    return int(cupy.cuda.Device(device_id).compute_capability) >= 80


def _cublas_tf32_matmul(a, b):
    """``a @ b`` with cuBLAS in TF32 mode, CuPy's float32 setting restored afterwards."""
    linalg = cupy._core._routines_linalg
    previous = linalg.get_compute_type(numpy.float32)
    linalg.set_compute_type(numpy.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        return a @ b
    finally:
        linalg.set_compute_type(numpy.float32, previous)


def matmul(a, b):
    """``a @ b`` for arrays, at the float32 matmul precision (see above)."""
    bits = MATMUL_PRECISIONS[_matmul_precision]
    if bits == 23 or a.dtype != numpy.float32 or b.dtype != numpy.float32:
        return a @ b
    if is_cupy_array(a) and _tf32_tensor_cores(a.device.id):
        if bits < 10:  # bfloat16 values are exact in TF32: round, then use the tensor cores
            a, b = round_mantissa(a, bits), round_mantissa(b, bits)
        return _cublas_tf32_matmul(a, b)
    return round_mantissa(a, bits) @ round_mantissa(b, bits)


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


# --------------------------------------------------------------------------- CPU threads
# NumPy runs its copies and elementwise passes on one core; OpenBLAS runs the matrix
# multiplies on all of them, and after each multiply its worker threads spin for about
# 0.1 s before they sleep, keeping a core busy with nothing. The fast path instead cuts
# its work (im2col copies, multiplies, BatchNorm's passes) into one part per core and
# runs the parts on a pool of its own threads, which sleep when idle, while OpenBLAS is
# held to one thread. NumPy releases the GIL inside those calls, so the parts run at
# the same time. On CuPy, or where OpenBLAS cannot be held to one thread (another BLAS,
# no /proc), everything runs as one part: the plain sequential calls.


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS NumPy loaded, or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split()[-1] for line in f if "openblas" in line and ".so" in line]
    except OSError:
        return None
    paths.sort(key=lambda p: "scipy_openblas" not in p)  # NumPy's own build first
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            try:
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
            return setter, getter
    return None


def _default_cpu_threads() -> int:
    if "MINIRES_CPU_THREADS" in os.environ:
        return max(1, int(os.environ["MINIRES_CPU_THREADS"]))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_cpu_threads = min(8, _default_cpu_threads())
_openblas = None  # found on first use
_pool = None  # (pid, task queue), started on first use
_in_worker = threading.local()


def set_cpu_threads(n: int) -> None:
    """How many parts the CPU fast path cuts its work into (1: no threads of its own).
    Defaults to the number of usable cores (at most 8), or ``MINIRES_CPU_THREADS``."""
    global _cpu_threads
    _cpu_threads = max(1, int(n))


def cpu_threads(xp) -> int:
    """Parts worth cutting work on arrays of ``xp`` into: 1 on CuPy, or when OpenBLAS
    cannot be held to one thread meanwhile."""
    global _openblas
    if xp is not numpy or _cpu_threads == 1 or getattr(_in_worker, "active", False):
        return 1
    if _openblas is None:
        _openblas = _find_openblas() or False
    return _cpu_threads if _openblas else 1


def _worker(tasks) -> None:
    _in_worker.active = True
    while True:
        fn, done, errors = tasks.get()
        try:
            fn()
        except BaseException as error:  # handed to the caller, which raises it
            errors.append(error)
        finally:
            done.release()


def _tasks():
    """The pool's task queue: started on first use, again in a forked child (which has
    no threads but the caller) or when more threads were asked for since."""
    global _pool
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < _cpu_threads - 1:
        tasks = queue.SimpleQueue()
        for _ in range(_cpu_threads - 1):
            threading.Thread(target=_worker, args=(tasks,), daemon=True,
                             name="minires-cpu").start()
        _pool = (os.getpid(), _cpu_threads - 1, tasks)
    return _pool[2]


@contextlib.contextmanager
def _one_blas_thread():
    setter, getter = _openblas
    previous = getter()
    setter(1)
    try:
        yield
    finally:
        setter(previous)


def parallel_rows(xp, n: int, fn) -> None:
    """Call ``fn(start, stop)`` over ``range(n)`` cut into ``cpu_threads(xp)`` parts, at
    the same time on the CPU's pool (OpenBLAS held to one thread meanwhile), as one
    call ``fn(0, n)`` on CuPy. The parts must write disjoint memory."""
    parts = min(cpu_threads(xp), n)
    if parts <= 1:
        fn(0, n)
        return
    bounds = [n * k // parts for k in range(parts + 1)]
    done, errors, tasks = threading.Semaphore(0), [], _tasks()
    with _one_blas_thread():
        for k in range(1, parts):
            tasks.put((functools.partial(fn, bounds[k], bounds[k + 1]), done, errors))
        try:
            fn(bounds[0], bounds[1])
        finally:
            for _ in range(1, parts):
                done.acquire()
    if errors:
        raise errors[0]
