"""``cupy.lib`` of the CuPy stand-in."""

from cupy_standin import _facade as _standin_facade

from . import stride_tricks  # noqa: F401

__getattr__ = _standin_facade.module_getattr(__name__)
