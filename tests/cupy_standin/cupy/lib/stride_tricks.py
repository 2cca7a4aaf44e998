"""``cupy.lib.stride_tricks`` of the CuPy stand-in (NumPy's as_strided on the buffer)."""

from cupy_standin import _facade as _standin_facade

__getattr__ = _standin_facade.module_getattr(__name__)
