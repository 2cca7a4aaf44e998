"""What a graph keeps alive: the bytes of arrays reachable from an object."""

from __future__ import annotations

import gc
import types

import numpy

from .. import backend


def arrays_reachable_from(root, skip=()) -> int:
    """Bytes of the NumPy and CuPy arrays reachable from ``root`` through Python
    references, each counted once; the objects in ``skip`` (parameters, say) and code
    (classes, functions, modules: ``ctx.xp`` is the numpy module) are not followed.
    ``arrays_reachable_from(loss.grad_fn, skip=params)`` is what backward left saved."""
    seen, total, stack = {id(s) for s in skip}, 0, [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, numpy.ndarray) or backend.is_cupy_array(obj):
            total += obj.nbytes
            continue
        stack.extend(gc.get_referents(obj))
    return total
