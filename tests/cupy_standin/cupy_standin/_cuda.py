"""``cupy.cuda`` of the stand-in: one device, streams and events that are always done,
kernels compiled for the CPU by ``minires.cuda_kernels.host``, and CUDA libraries that can be
made to fail to load.

Settings (environment variables, read at each call, so a test can change them):

* ``CUPY_STANDIN_DEVICE_COUNT`` (default 1): 0 makes ``getDeviceCount`` fail as it does
  on a machine without a GPU.
* ``CUPY_STANDIN_MISSING_LIBS`` (e.g. ``nvrtc`` or ``cublas,nvrtc``): those libraries
  fail to load at their first use, with the errors CuPy 14 raises (NVRTC when a kernel
  is compiled, cuBLAS when floating-point matrices are multiplied).
* ``CUPY_STANDIN_COMPUTE_CAPABILITY`` (default ``90``): what ``Device.compute_capability``
  says (80 and up: cuBLAS has TF32 tensor cores).
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from types import SimpleNamespace

import numpy

from . import _api
from ._syncs import syncs

COMPUTE_TYPE_DEFAULT = _api.module_entry("cupy._core._routines_linalg",
                                         "COMPUTE_TYPE_DEFAULT")["value"]
COMPUTE_TYPE_TF32 = _api.module_entry("cupy._core._routines_linalg",
                                      "COMPUTE_TYPE_TF32")["value"]
_compute_types: dict = {}

launches: Counter = Counter()  # kernel name -> launches, for tests that count them


class CUDARuntimeError(RuntimeError):
    """``cupy.cuda.runtime.CUDARuntimeError``."""

    __module__ = "cupy_backends.cuda.api.runtime"

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class DynamicLibNotFoundError(RuntimeError):
    """What ``cuda.pathfinder`` raises for a CUDA library it cannot find (CuPy 14 finds
    its libraries through it); CuPy turns it into ImportError for cuBLAS."""

    __module__ = "cuda.pathfinder"


_SONAMES = {"nvrtc": "libnvrtc.so.12", "cublas": "libcublas.so.12",
            "cudart": "libcudart.so.12"}


def _missing() -> set:
    return {n.strip().lower() for n in os.environ.get("CUPY_STANDIN_MISSING_LIBS", "").split(",")
            if n.strip()}


def load_library(name: str) -> None:
    """Fail as CuPy 14 does when the CUDA library ``name`` is not installed."""
    if name not in _missing():
        return
    soname = _SONAMES.get(name, f"lib{name}.so.12")
    message = (f'Failure finding "{soname}": No such file: {soname} (the CuPy stand-in '
               "simulates a missing library: CUPY_STANDIN_MISSING_LIBS)")
    if name == "nvrtc":
        raise DynamicLibNotFoundError(message)
    raise ImportError(message)


def device_count() -> int:
    return int(os.environ.get("CUPY_STANDIN_DEVICE_COUNT", "1"))


def compute_type(dtype) -> int:
    return _compute_types.get(numpy.dtype(dtype), COMPUTE_TYPE_DEFAULT)


def set_compute_type(dtype, compute_type) -> None:
    _compute_types[numpy.dtype(dtype)] = compute_type


def get_compute_type(dtype) -> int:
    return compute_type(dtype)


# --------------------------------------------------------------------------- runtime


def getDeviceCount() -> int:
    if device_count() == 0:
        raise CUDARuntimeError(100, "cudaErrorNoDevice: no CUDA-capable device is detected")
    return device_count()


def getDeviceProperties(device):
    _check_device(device)
    cc = _compute_capability()
    return {"name": b"CuPy stand-in (NumPy on the CPU)", "totalGlobalMem": 16 * 2**30,
            "major": int(cc[:-1]), "minor": int(cc[-1]), "multiProcessorCount": 1,
            "maxThreadsPerBlock": 1024, "warpSize": 32}


def runtimeGetVersion() -> int:
    return 12080


def driverGetVersion() -> int:
    return 12080


def getDevice() -> int:
    getDeviceCount()
    return 0


def deviceSynchronize() -> None:
    syncs.record("synchronize", "runtime.deviceSynchronize")


def memGetInfo():
    return (15 * 2**30, 16 * 2**30)


def _check_device(device_id) -> None:
    if not 0 <= int(device_id) < getDeviceCount():
        raise CUDARuntimeError(101, "cudaErrorInvalidDevice: invalid device ordinal")


def _compute_capability() -> str:
    return os.environ.get("CUPY_STANDIN_COMPUTE_CAPABILITY", "90")


# --------------------------------------------------------------------------- devices


class Device:
    """``cupy.cuda.Device``: the one device of the stand-in."""

    __module__ = "cupy.cuda.device"

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    @property
    def compute_capability(self) -> str:
        _check_device(self.id)
        return _compute_capability()

    @property
    def mem_info(self):
        return memGetInfo()

    def synchronize(self) -> None:
        _check_device(self.id)
        syncs.record("synchronize", "Device.synchronize")

    def use(self) -> None:
        _check_device(self.id)

    def __enter__(self):
        self.use()
        return self

    def __exit__(self, *args):
        return None

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Event:
    """``cupy.cuda.Event``: the stand-in runs each operation when it is called, so an
    event is done as soon as it is recorded."""

    __module__ = "cupy.cuda.stream"

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None) -> None:
        self.time = time.perf_counter()

    @property
    def done(self) -> bool:
        return True

    def synchronize(self) -> None:
        syncs.record("synchronize", "Event.synchronize")


class Stream:
    """``cupy.cuda.Stream``: work is never queued, so every stream is always done."""

    __module__ = "cupy.cuda.stream"
    null: Stream

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else id(self)

    @property
    def done(self) -> bool:
        return True

    def synchronize(self) -> None:
        syncs.record("synchronize", "Stream.synchronize")

    def record(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event) -> None:
        return None

    def use(self):
        global _current_stream
        _current_stream = self
        return self

    def __enter__(self):
        self._previous = _current_stream
        return self.use()

    def __exit__(self, *args):
        self._previous.use()


Stream.null = Stream(null=True)
_current_stream = Stream.null


def get_current_stream(device_id=-1):
    return _current_stream


def get_elapsed_time(start_event, end_event) -> float:
    """Milliseconds between two recorded events (wall-clock time of the host here)."""
    return (end_event.time - start_event.time) * 1000.0


# --------------------------------------------------------------------------- kernels


def _extern_c_names(code: str) -> tuple:
    return tuple(re.findall(r'extern\s+"C"\s+__global__\s+void\s+(\w+)', code))


class RawModule:
    """``cupy.RawModule``: the CUDA source compiled for the CPU by minires.cuda_kernels.host
    (NVRTC's part: it fails as CuPy does when NVRTC is missing)."""

    __module__ = "cupy"

    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=None):
        if path is not None or code is None:
            raise NotImplementedError("RawModule(path=...) is not implemented by the CuPy "
                                      "stand-in; pass code=")
        if not isinstance(options, tuple):
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got "
                            f"{type(options).__name__})")
        self.code, self.options, self.backend = code, options, backend
        self.name_expressions = None if name_expressions is None else list(name_expressions)
        self._names = tuple(self.name_expressions or ()) + _extern_c_names(code)
        self._library = None

    def compile(self, log_stream=None) -> None:
        load_library("nvrtc")
        if self._library is None:
            from minires.cuda_kernels import host

            self._library = host.build(SimpleNamespace(code=self.code,
                                                       name_expressions=self._names))

    def get_function(self, name):
        if not isinstance(name, str):
            raise TypeError(f"Argument 'name' has incorrect type (expected str, got "
                            f"{type(name).__name__})")
        self.compile()
        if name not in self._names:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found ({name!r} is "
                               "neither an extern \"C\" kernel nor in name_expressions)")
        return RawKernel._of_module(self, name)


class RawKernel:
    """``cupy.RawKernel``: one kernel, launched on the CPU one thread after another."""

    __module__ = "cupy"

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False,
                 *, enable_cooperative_groups=False, jitify=None):
        self.code, self.name, self.options = code, name, options
        self._module = RawModule(code=code, options=options)

    @classmethod
    def _of_module(cls, module, name):
        kernel = cls.__new__(cls)
        kernel.code, kernel.name, kernel.options, kernel._module = \
            module.code, name, module.options, module
        return kernel

    def compile(self, log_stream=None) -> None:
        self._module.compile()

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        from minires.cuda_kernels import host

        from ._array import ndarray

        for what, value in (("grid", grid), ("block", block), ("args", args)):
            if not isinstance(value, tuple):
                raise TypeError(f"Argument '{what}' has incorrect type (expected tuple, got "
                                f"{type(value).__name__})")
        self._module.compile()
        converted = []
        for a in args:
            if isinstance(a, ndarray):
                converted.append(a._a)
            elif isinstance(a, numpy.ndarray):
                if a.size != 1:
                    raise TypeError(
                        f"You are trying to pass a numpy.ndarray of shape {a.shape} as a "
                        "kernel parameter. Only numpy.ndarrays of size one can be passed by "
                        "value. If you meant to pass a pointer to __global__ memory, you need "
                        "to pass a cupy.ndarray instead.")
                converted.append(a.reshape(-1)[0])
            else:
                converted.append(a)
        launches[self.name] += 1
        host.HostFunction(self._module._library, self.name)(grid, block, tuple(converted))
