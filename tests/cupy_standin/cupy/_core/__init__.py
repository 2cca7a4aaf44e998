"""``cupy._core`` of the CuPy stand-in: only what minires reaches (the cuBLAS switch)."""

from cupy_standin import _facade as _standin_facade

from . import _routines_linalg  # noqa: F401

__getattr__ = _standin_facade.module_getattr(__name__)
