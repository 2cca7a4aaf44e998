"""The CuPy functions that need more than NumPy's function of the same name: copies
between host and device, allocation, index wrapping, implicit host reads, cuBLAS (its
TF32 mode, and a cuBLAS that fails to load)."""

from __future__ import annotations

import numpy

from . import _api, _cuda
from ._array import (
    Function,
    _wrap,
    host_array_error,
    index_key,
    ndarray,
    uninitialized,
    unwrap,
    wrap_result,
)
from ._syncs import syncs

_NUMPY_MODULES = {"cupy": numpy, "cupy.linalg": numpy.linalg,
                  "cupy.lib.stride_tricks": numpy.lib.stride_tricks, "cupy.fft": numpy.fft}

# functions whose result size depends on device data: CuPy reads a count to the host
_IMPLICIT_SYNC = {"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress"}
# NumPy returns Python bools here, CuPy 0-d device arrays
_DEVICE_BOOL = {"array_equal", "allclose", "array_equiv"}


def _params(name, module="cupy"):
    entry = _api.module_entry(module, name)
    if entry is None:
        raise _api.no_such_name(f"module '{module}'", name)
    return entry.get("parameters")


def _checked(name, module="cupy"):
    """Decorator: check calls against the real ``module.name``'s parameters."""
    params = _params(name, module)

    def decorate(fn):
        def call(*args, **kwargs):
            _api.check_call(f"{module}.{name}", params, args, kwargs)
            return fn(*args, **kwargs)
        call.__name__ = call.__qualname__ = name
        call.__module__ = module
        call.__doc__ = fn.__doc__
        call.__wrapped__ = fn
        return call
    return decorate


# --------------------------------------------------------------------------- host <-> device


def _to_device(obj, dtype=None, copy=True, order="K", ndmin=0):
    """Device copy of host data (NumPy arrays, lists, scalars) or of device arrays."""
    if isinstance(obj, ndarray) and not copy and dtype in (None, obj.dtype) and ndmin <= obj.ndim:
        return obj
    host = unwrap(obj, "cupy.array", allow_host=True)
    if isinstance(host, numpy.ndarray) and order == "K" and host.ndim and \
            not host.flags.c_contiguous and not host.flags.f_contiguous:
        order = "C"  # CuPy copies a non-contiguous host array into a C-ordered buffer
    return _wrap(numpy.array(host, dtype=dtype, copy=True, order=order, ndmin=ndmin))


@_checked("array")
def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    return _to_device(obj, dtype, copy, order, ndmin)


@_checked("asarray")
def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if isinstance(a, ndarray) and copy is not True and dtype in (None, a.dtype):
        return a
    return _to_device(a, dtype, True, order or "K")


@_checked("asanyarray")
def asanyarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return asarray(a, dtype, order, copy=copy, blocking=blocking)


@_checked("asnumpy")
def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    if out is not None:
        numpy.copyto(out, a)
        return out
    return numpy.asarray(a, order=order)


@_checked("get_array_module")
def get_array_module(*args):
    import cupy

    return cupy if any(isinstance(a, ndarray) for a in args) else numpy


# --------------------------------------------------------------------------- allocation


@_checked("empty")
def empty(shape, dtype=float, order="C"):
    return _wrap(uninitialized(numpy.empty(shape, dtype=dtype, order=order)))


@_checked("empty_like")
def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    if not isinstance(prototype, ndarray):
        raise host_array_error("cupy.empty_like", prototype)
    return _wrap(uninitialized(numpy.empty_like(prototype._a, dtype=dtype, order=order,
                                                shape=shape)))


# --------------------------------------------------------------------------- indices wrap


@_checked("take")
def take(a, indices, axis=None, out=None):
    if not isinstance(a, ndarray):
        raise host_array_error("cupy.take", a)
    source = a._a if axis is not None else a._a.reshape(-1)
    axis = 0 if axis is None else axis % a.ndim
    index = numpy.asarray(unwrap(indices, "cupy.take", allow_host=True))
    index = index % source.shape[axis] if source.shape[axis] else index  # wraps on a GPU
    result = numpy.take(source, index, axis=axis)
    if out is not None:
        out._a[...] = result
        return out
    return _wrap(result)


@_checked("take_along_axis")
def take_along_axis(arr, indices, axis):
    if not isinstance(arr, ndarray) or not isinstance(indices, ndarray):
        raise host_array_error("cupy.take_along_axis",
                               indices if isinstance(arr, ndarray) else arr)
    source = arr._a if axis is not None else arr._a.reshape(-1)
    axis = 0 if axis is None else axis % arr.ndim
    index = indices._a % source.shape[axis] if source.shape[axis] else indices._a
    return _wrap(numpy.take_along_axis(source, index, axis=axis))


@_checked("put")
def put(a, ind, v, mode="wrap"):
    if mode not in ("raise", "wrap", "clip"):
        raise ValueError("clipmode not understood")
    if mode == "raise":
        raise TypeError("put mode 'raise' is not supported")
    a._a.put(numpy.asarray(unwrap(ind, "cupy.put", allow_host=True)),
             unwrap(v, "cupy.put", allow_host=True), mode=mode)


def scatter(op):
    def scatter_op(a, slices, value):
        where = f"cupyx.scatter_{op}"
        if not isinstance(a, ndarray):
            raise host_array_error(where, a)
        key, _, _ = index_key(a.shape, slices, where)
        value = value._a if isinstance(value, ndarray) else unwrap(value, where)
        {"add": numpy.add, "max": numpy.maximum, "min": numpy.minimum}[op].at(a._a, key, value)
    scatter_op.__name__ = f"scatter_{op}"
    return scatter_op


# --------------------------------------------------------------------------- cuBLAS


def _uses_cublas(arrays) -> bool:
    return any(isinstance(a, ndarray) and a.dtype.kind in "fc" for a in arrays)


def _tf32(arrays):
    """The inputs as cuBLAS in TF32 mode sees them: float32 rounded to 10 mantissa bits
    (nearest, ties away from zero, like PTX's cvt.rna.tf32.f32)."""
    if _cuda.compute_type(numpy.float32) != _cuda.COMPUTE_TYPE_TF32:
        return arrays
    out = []
    for a in arrays:
        if isinstance(a, ndarray) and a.dtype == numpy.float32:
            bits = numpy.ascontiguousarray(a._a).view(numpy.uint32)
            rounded = ((bits + numpy.uint32(1 << 12)) & numpy.uint32(0xFFFFE000)).view(
                numpy.float32)
            a = _wrap(numpy.where(numpy.isfinite(a._a), rounded, a._a))
        out.append(a)
    return out


def blas(name):
    """cupy.matmul/dot/tensordot/einsum: cuBLAS for floating-point operands."""
    fn = getattr(numpy, name)
    params = _params(name)

    def call(*args, **kwargs):
        where = f"cupy.{name}"
        _api.check_call(where, params, args, kwargs)
        operands = args[1:] if name == "einsum" else args
        cublas = _uses_cublas(operands) and (name != "einsum" or len(operands) > 1)
        if cublas:
            _cuda.load_library("cublas")
            args = (args[:1] + tuple(_tf32(args[1:]))) if name == "einsum" else \
                tuple(_tf32(args[:2])) + tuple(args[2:])
        owners = {}
        args = unwrap(args, where, owners)
        kwargs = unwrap(kwargs, where, owners)
        for a in (args[1:] if name == "einsum" else args[:2]):
            if not isinstance(a, numpy.ndarray) and name != "einsum":
                raise TypeError(f"Unsupported type {type(a)}")
        return wrap_result(fn(*args, **kwargs), owners)
    call.__name__ = call.__qualname__ = name
    call.__module__ = "cupy"
    return call


# --------------------------------------------------------------------------- the rest


def generic(module: str, name: str, entry: dict):
    """The stand-in for ``module.name`` built from NumPy's function of that name, or
    None when NumPy has none."""
    fn = getattr(_NUMPY_MODULES.get(module), name, None) if module in _NUMPY_MODULES else None
    if fn is None or not callable(fn):
        return None
    qualname = f"{module}.{name}"
    if name in _DEVICE_BOOL and module == "cupy":
        inner = Function(qualname, fn, entry.get("parameters"))

        def device_bool(*args, **kwargs):
            return _wrap(numpy.asarray(bool(inner.fn(*unwrap(args, qualname),
                                                     **unwrap(kwargs, qualname)))))
        device_bool.__name__ = name
        return device_bool
    implicit = module == "cupy" and (name in _IMPLICIT_SYNC)
    if module == "cupy" and name == "where":
        inner = Function(qualname, fn, entry.get("parameters"))

        def where(condition, x=None, y=None):
            if x is None and y is None:  # cupy.where(c) is cupy.nonzero(c)
                syncs.record("implicit", "cupy.where")
            return inner(condition, *([] if x is None and y is None else [x, y]))
        where.__name__ = "where"
        return where
    return Function(qualname, fn, entry.get("parameters"), implicit_sync=implicit)


__all__ = ["array", "asarray", "asanyarray", "asnumpy", "get_array_module", "empty",
           "empty_like", "take", "take_along_axis", "put", "scatter", "blas", "generic"]
