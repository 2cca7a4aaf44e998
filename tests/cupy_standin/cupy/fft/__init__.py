"""``cupy.fft`` of the CuPy stand-in (NumPy's functions of the same names)."""

from cupy_standin import _facade as _standin_facade

__getattr__ = _standin_facade.module_getattr(__name__)
