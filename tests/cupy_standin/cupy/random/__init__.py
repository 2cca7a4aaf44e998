"""``cupy.random`` of the CuPy stand-in: ``default_rng``, the bit generators and CuPy's
Generator API."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._random import XORWOW, Generator, MRG32k3a, Philox4x3210, default_rng  # noqa: F401

__getattr__ = _standin_facade.module_getattr(__name__)
