"""The one seam between minires and its array libraries.

Everything above this file works on "xp" arrays: ``numpy.ndarray`` on the CPU and
``cupy.ndarray`` on a CUDA GPU. The math is written once against the common API of the
two; this module decides which library an array belongs to, moves arrays between
devices, owns the random generators, and lets optional CUDA kernels replace an
array-level helper without a single ``if gpu:`` in the ops.
"""

from __future__ import annotations

import functools
import os

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
        if cupy is None:
            return False
        try:
            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            return False

    @staticmethod
    def device_count() -> int:
        return cupy.cuda.runtime.getDeviceCount() if cuda.is_available() else 0

    @staticmethod
    def synchronize() -> None:
        if cuda.is_available():
            cupy.cuda.Device().synchronize()


def _require_cuda() -> None:
    if cupy is None:
        raise RuntimeError(
            "CUDA was asked for but CuPy is not installed or failed to import "
            f"({_cupy_error}). Install the extra that matches your CUDA version: "
            "pip install 'minires[cuda12]' or pip install 'minires[cuda13]'."
        )
    if not cuda.is_available():
        raise RuntimeError(
            "CUDA was asked for but CuPy finds no GPU (cupy.cuda.runtime.getDeviceCount() "
            "is 0 or failed). Check the NVIDIA driver with nvidia-smi, or use device='cpu'."
        )


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
# One generator per library, both reseeded by ``manual_seed``. Ops draw from the
# generator of the library their data lives in, so dropout on the GPU never copies
# a mask from the host.

_generators: dict = {}
_seed = None


def manual_seed(seed: int) -> None:
    """Seed every random generator minires uses (CPU and, if present, GPU)."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(xp):
    """The random generator for arrays of library ``xp`` (``numpy.random.Generator`` API)."""
    key = xp.__name__
    if key not in _generators:
        _generators[key] = xp.random.default_rng(_seed)
    return _generators[key]


def get_rng_state() -> dict:
    """The CPU generator's state as plain Python values (for checkpoints)."""
    return {"seed": _seed, "numpy": generator(numpy).bit_generator.state}


def set_rng_state(state: dict) -> None:
    global _seed
    _seed = state["seed"]
    generator(numpy).bit_generator.state = state["numpy"]


# --------------------------------------------------------------------------- kernels
# An op calls an array-level helper such as ``im2col(xp, x, ...)``. A CUDA kernel may
# register a faster version of that helper; the dispatcher uses it for CuPy arrays
# when kernels are on, and the pure-xp reference otherwise.

_kernels: dict = {}
_kernels_enabled = os.environ.get("MINIRES_KERNELS", "1") != "0"


def use_kernels(enabled: bool = True) -> None:
    """Turn the registered CUDA kernels on or off (off: the pure-xp references run)."""
    global _kernels_enabled
    _kernels_enabled = bool(enabled)


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
