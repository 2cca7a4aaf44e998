"""``cupy.cuda`` of the CuPy stand-in."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._cuda import Device, Event, Stream, get_current_stream, get_elapsed_time
from cupy_standin._cuda import device_count as _standin_device_count

from . import runtime  # noqa: F401


def is_available() -> bool:
    return _standin_device_count() > 0


__getattr__ = _standin_facade.module_getattr(__name__)
