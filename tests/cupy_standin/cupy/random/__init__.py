"""``cupy.random`` of the CuPy stand-in: ``default_rng`` and CuPy's Generator API."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._random import XORWOW, Generator, default_rng  # noqa: F401

__getattr__ = _standin_facade.module_getattr(__name__)
