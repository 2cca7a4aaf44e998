"""Name lookup for the stand-in's modules: what a module does not define itself is
looked up in the real CuPy's list, then built from NumPy's function of the same name;
anything else is refused with an AttributeError that says why."""

from __future__ import annotations

import importlib
import os
import sys

import numpy

from . import _api
from ._array import Function, ufunc
from ._functions import generic

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _facade_exists(path: str) -> bool:
    parts = path.split(".")
    base = os.path.join(_PACKAGE_ROOT, *parts)
    return os.path.isdir(base) or os.path.isfile(base + ".py")


def resolve(module: str, name: str):
    entry = _api.module_entry(module, name)
    if entry is None:
        raise _api.no_such_name(f"module '{module}'", name)
    kind = entry["kind"]
    if kind == "type" and hasattr(numpy, name):
        return getattr(numpy, name)  # cupy.float32 is numpy.float32
    if kind == "constant":
        return entry["value"]
    if kind == "module":
        if entry["path"] == "numpy":
            return numpy
        if entry["path"].startswith("cupy") and _facade_exists(entry["path"]):
            return importlib.import_module(entry["path"])
    if kind == "ufunc":
        fn = getattr(numpy, name, None)
        if callable(fn):
            return ufunc(name, fn, entry["parameters"], entry["nin"], entry["nout"])
    if kind == "function":
        found = generic(module, name, entry)
        if found is not None:
            return found
    raise _api.not_implemented(module, name)


def module_getattr(module: str):
    """A module-level ``__getattr__`` (PEP 562) for the stand-in module ``module``;
    what it finds is kept in the module, so ``cupy.add is cupy.add``."""

    def __getattr__(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # import machinery probes: __path__, __file__...
        value = resolve(module, name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__


__all__ = ["resolve", "module_getattr", "Function"]
