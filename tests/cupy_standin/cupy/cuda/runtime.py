"""``cupy.cuda.runtime`` of the CuPy stand-in."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._cuda import (  # noqa: F401
                                CUDARuntimeError,
                                deviceSynchronize,
                                driverGetVersion,
                                getDevice,
                                getDeviceCount,
                                getDeviceProperties,
                                memGetInfo,
                                runtimeGetVersion,
)

is_hip = False

__getattr__ = _standin_facade.module_getattr(__name__)
