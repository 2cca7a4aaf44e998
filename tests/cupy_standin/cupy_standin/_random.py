"""``cupy.random.default_rng`` of the stand-in: the methods and keywords of CuPy's
``Generator`` (far fewer than NumPy's: no ``normal``, ``permutation`` or ``choice``),
drawing from NumPy's generator. The numbers differ from a GPU's (CuPy's default bit
generator is XORWOW); the shapes, dtypes and the device do not."""

from __future__ import annotations

import inspect

import numpy

from . import _api
from ._array import _wrap, ndarray, unwrap, wrap_result


class XORWOW:
    """``cupy.random.XORWOW`` (its state lives on the device: no ``state`` dict)."""

    __module__ = "cupy.random._bit_generator"

    def __init__(self, seed=None, *, size=-1):
        if seed is not None and not isinstance(seed, (int, numpy.integer)):
            raise TypeError(f"XORWOW seed must be an int or None, got {type(seed).__name__}")
        self._numpy = numpy.random.default_rng(seed)

    def __getattr__(self, name):
        if _api.member_entry("cupy.random.XORWOW", name) is None:
            raise _api.no_such_name("'cupy.random.XORWOW' object", name)
        raise _api.not_implemented("cupy.random.XORWOW", name)


class Generator:
    """``cupy.random.Generator``."""

    __module__ = "cupy.random._generator_api"

    def __init__(self, bit_generator):
        if not isinstance(bit_generator, XORWOW):
            raise TypeError("cupy.random.Generator needs a CuPy bit generator")
        self.bit_generator = bit_generator

    def __getattr__(self, name):
        entry = _api.member_entry("cupy.random.Generator", name)
        if entry is None:
            raise _api.no_such_name("'cupy.random.Generator' object", name)
        method = getattr(self.bit_generator._numpy, name, None)
        if entry["kind"] != "function" or method is None or name.startswith("_"):
            raise _api.not_implemented("cupy.random.Generator", name)
        params = entry["parameters"]
        where = f"cupy.random.Generator.{name}"
        numpy_keywords = set(inspect.signature(method).parameters)

        def draw(*args, **kwargs):
            _api.check_call(where, params, args, kwargs)
            bound = dict(zip([p[0] for p in params], args), **kwargs)
            dtype = bound.pop("dtype", None) if "dtype" not in numpy_keywords else None
            out = bound.pop("out", None)
            if out is not None and not isinstance(out, ndarray):
                raise TypeError(f"{where}: out must be a cupy.ndarray")
            bound = unwrap(bound, where)
            if out is not None:
                bound.setdefault("size", out.shape)
                if "dtype" in numpy_keywords:
                    bound.setdefault("dtype", out.dtype)
            result = method(**bound)
            if dtype is not None:
                result = numpy.asarray(result).astype(dtype)
            if out is not None:
                out._a[...] = result
                return out
            return wrap_result(result) if isinstance(result, (numpy.ndarray, numpy.generic)) \
                else _wrap(numpy.asarray(result))
        return draw


def default_rng(seed=None):
    return Generator(XORWOW(seed))
