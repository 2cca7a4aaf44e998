"""``cupy.random`` of the stand-in: ``default_rng``, the bit generators ``XORWOW``,
``MRG32k3a`` and ``Philox4x3210`` with CuPy's signature and seeding, and the methods and
keywords of CuPy's ``Generator`` (far fewer than NumPy's: no ``normal``, ``permutation``
or ``choice``), drawing from NumPy's generator. The numbers differ from a GPU's (cuRAND
computes them there); the shapes, dtypes, the device and the determinism per seed do
not."""

from __future__ import annotations

import inspect

import numpy

from . import _api
from ._array import _wrap, ndarray, unwrap, wrap_result

# CuPy's default number of generator states (cupy/random/_bit_generator.pyx multiplies
# 8 * 256 by the enum value cudaDevAttrMultiProcessorCount, 16, not by the device's count)
_DEFAULT_STATES = 8 * 256 * 16


class _CuRandBitGenerator:
    """CuPy's cuRAND bit generators (``cupy/random/_bit_generator.pyx``): the seed is an
    int, a sequence of ints, a ``numpy.random.SeedSequence`` or a ``cupy.ndarray`` (read
    back to the host, as CuPy does), goes through ``SeedSequence`` and is cut to one
    32-bit integer, the seed cuRAND gets; ``size`` is the number of states (threads).
    The stand-in draws from NumPy's Philox seeded with that 32-bit seed, the generator's
    kind and ``size``: deterministic per seed like CuPy, so two seeds whose 32-bit cuts
    are equal give the same numbers here as on a GPU, but the numbers are not cuRAND's."""

    generator = -1  # the cuRAND generator's enum value in CuPy (subclasses set it)

    def __init__(self, seed=None, *, size=-1):
        if isinstance(seed, ndarray):
            seed = seed.get()  # CuPy reads a device seed back with cupy.asnumpy
        if not isinstance(seed, numpy.random.SeedSequence):
            seed = numpy.random.SeedSequence(seed)
        if isinstance(size, bool) or not isinstance(size, (int, numpy.integer)):
            raise TypeError(f"{type(self).__name__}: size must be an int, got {size!r}")
        self._seed = int(seed.generate_state(1, numpy.uint32)[0])
        self._size = int(size) if size >= 0 else _DEFAULT_STATES
        self._numpy = numpy.random.Generator(numpy.random.Philox(
            numpy.random.SeedSequence([self._seed, self.generator, self._size])))

    def _state_size(self):
        return self._size

    def __getattr__(self, name):
        where = f"cupy.random.{type(self).__name__}"
        if _api.member_entry("cupy.random.XORWOW", name) is None:
            raise _api.no_such_name(f"'{where}' object", name)
        raise _api.not_implemented(where, name)


class XORWOW(_CuRandBitGenerator):
    """``cupy.random.XORWOW`` (its state lives on the device: no ``state`` dict)."""

    __module__ = "cupy.random._bit_generator"
    generator = 0  # CURAND_XOR_WOW


class MRG32k3a(_CuRandBitGenerator):
    """``cupy.random.MRG32k3a``."""

    __module__ = "cupy.random._bit_generator"
    generator = 1  # CURAND_MRG32k3a


class Philox4x3210(_CuRandBitGenerator):
    """``cupy.random.Philox4x3210``: counter-based, so setting up its states is cheap."""

    __module__ = "cupy.random._bit_generator"
    generator = 2  # CURAND_PHILOX_4x32_10


class Generator:
    """``cupy.random.Generator``."""

    __module__ = "cupy.random._generator_api"

    def __init__(self, bit_generator):
        if not isinstance(bit_generator, _CuRandBitGenerator):
            raise TypeError("cupy.random.Generator needs a CuPy bit generator (XORWOW, "
                            f"MRG32k3a, Philox4x3210), got {type(bit_generator).__name__}")
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
    """``cupy.random.default_rng``: a bit generator is wrapped, a Generator returned as it
    is, anything else seeds an XORWOW (CuPy's default)."""
    if isinstance(seed, _CuRandBitGenerator):
        return Generator(seed)
    if isinstance(seed, Generator):
        return seed
    return Generator(XORWOW(seed))
