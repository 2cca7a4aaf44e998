"""``cupyx`` of the CuPy stand-in: the scatter functions (indices wrap, as on a GPU)."""

from cupy_standin import _facade as _standin_facade
from cupy_standin._functions import scatter as _standin_scatter

scatter_add = _standin_scatter("add")
scatter_max = _standin_scatter("max")
scatter_min = _standin_scatter("min")

__getattr__ = _standin_facade.module_getattr(__name__)
