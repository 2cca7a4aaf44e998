"""Dump the names and keyword arguments of the real CuPy into JSON, for the stand-in.

The CuPy stand-in of the tests (``tests/cupy_standin``) offers only what the real CuPy
offers: every name it answers to and every keyword it accepts must be in this list. The
real ``cupy-cuda12x`` wheel installs and imports on a machine without a GPU (only calls
that reach the CUDA driver fail), which is all this script needs:

    python -m venv /tmp/cupy-api && /tmp/cupy-api/bin/pip install "cupy-cuda12x==14.2.0"
    /tmp/cupy-api/bin/python scripts/dump_cupy_api.py --out tests/cupy_standin/cupy_api.json

For every module below it records each name that ``dir()`` lists and what it is (module,
class, function, ufunc, type, constant); for functions and for the methods of the
classes below, the parameters (name and kind) from ``inspect.signature`` or, for
Cython functions without one, from the signature line that Cython writes at the top of
the docstring. ``null`` parameters mean that neither source says.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import re
import sys
import tempfile

MODULES = [
    "cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.cuda.memory", "cupy.cuda.stream",
    "cupy.cuda.device", "cupy.random", "cupy.linalg", "cupy.lib", "cupy.lib.stride_tricks",
    "cupy.fft", "cupy._core", "cupy._core._routines_linalg", "cupyx",
]

CLASSES = [
    "cupy.ndarray", "cupy.ufunc", "cupy.RawModule", "cupy.RawKernel",
    "cupy.ElementwiseKernel", "cupy.cuda.Device", "cupy.cuda.Stream", "cupy.cuda.Event",
    "cupy.cuda.MemoryPool", "cupy.cuda.PinnedMemoryPool", "cupy.random.Generator",
    "cupy.random.BitGenerator", "cupy.random.XORWOW", "cupy.flatiter",
]

KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _split_top_level(text: str) -> list:
    """Split a parameter list at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def doc_signature(obj, name: str):
    """Parameters from a Cython docstring's first line, e.g.
    ``_ndarray_base.sum(self, axis=None, dtype=None, out=None, keepdims=False) -> ...``."""
    doc = (getattr(obj, "__doc__", None) or "").strip().split("\n")[0].replace("\\*", "*")
    pattern = r"\w+" if name is None else re.escape(name)  # None: an alias of any name
    match = re.match(r"^[\w.]*?\b" + pattern + r"\((.*)\)\s*(->.*)?$", doc)
    if not match:
        return None
    params, kind = [], "positional_or_keyword"
    for part in _split_top_level(match.group(1)):
        if part == "/":
            for p in params:
                p[1] = "positional_only"
            continue
        if part == "*":
            kind = "keyword_only"
            continue
        if part.startswith("**"):
            params.append([part[2:].strip(), "var_keyword", False])
            continue
        if part.startswith("*"):
            params.append([part[1:].strip(), "var_positional", False])
            kind = "keyword_only"
            continue
        head = part.split("=", 1)[0].strip()
        params.append([head.split()[-1], kind, "=" in part])  # drop a Cython type: "str code"
    return params


def parameters(obj, name: str, method: bool):
    """[[name, kind, has_default], ...] without ``self``/``cls``, or None when unknown."""
    params = None
    try:
        sig = inspect.signature(obj)
        params = [[p.name, KINDS[p.kind], p.default is not p.empty]
                  for p in sig.parameters.values()]
    except (TypeError, ValueError):
        pass
    documented = doc_signature(obj, name)
    if documented is None and type(obj).__name__ == "ufunc":  # aliases: abs is absolute
        documented = doc_signature(obj, None)
    # inspect sees only (*args, **kwargs) in some Python wrappers and in Cython
    # __init__s; the docstring then says what they accept
    if documented is not None and (params is None or [p[1] for p in params] in (
            ["var_positional", "var_keyword"],
            ["positional_only", "var_positional", "var_keyword"])):
        params = documented
    if params and method and params[0][0] in ("self", "cls"):
        params = params[1:]
    return params


def describe(obj, name: str, method: bool = False) -> dict:
    import numpy

    if inspect.ismodule(obj):
        return {"kind": "module", "path": obj.__name__}
    if isinstance(obj, type):
        if issubclass(obj, numpy.generic):
            return {"kind": "type"}
        entry = {"kind": "class", "path": f"{obj.__module__}.{obj.__qualname__}"}
        init = obj.__init__ if "__init__" in vars(obj) else None
        entry["parameters"] = (parameters(obj, obj.__name__, False)
                               or (parameters(init, "__init__", True) if init else None))
        return entry
    if type(obj).__name__ == "ufunc":
        return {"kind": "ufunc", "parameters": parameters(obj, name, False),
                "nin": obj.nin, "nout": obj.nout}
    if isinstance(obj, property) or type(obj).__name__ in ("getset_descriptor",
                                                          "member_descriptor"):
        return {"kind": "attribute"}
    if callable(obj):
        return {"kind": "function", "parameters": parameters(obj, name, method)}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return {"kind": "constant", "value": obj}
    return {"kind": "object", "type": type(obj).__name__}


def dump() -> dict:
    import cupy
    import numpy

    modules = {}
    for path in MODULES:
        module = importlib.import_module(path)
        entries = {}
        for name in sorted(dir(module)):
            if name.startswith("__") and name != "__version__":
                continue
            try:
                entries[name] = describe(getattr(module, name), name)
            except Exception as error:  # an attribute that needs a GPU to compute
                entries[name] = {"kind": "object", "type": f"unreadable: {error}"}
        modules[path] = entries
    # some names are served by a module __getattr__ and missing from dir():
    # cupy.random.Generator, for one
    for path in CLASSES:
        module_path, _, class_name = path.rpartition(".")
        if module_path in modules and class_name not in modules[module_path]:
            obj = getattr(importlib.import_module(module_path), class_name)
            modules[module_path][class_name] = describe(obj, class_name)
    classes = {}
    for path in CLASSES:
        module_path, _, class_name = path.rpartition(".")
        cls = getattr(importlib.import_module(module_path), class_name)
        members = {}
        for name in sorted(dir(cls)):
            if name.startswith("__") and name not in (
                    "__call__", "__enter__", "__exit__", "__getitem__", "__setitem__",
                    "__array__", "__array_ufunc__", "__array_function__", "__iter__",
                    "__len__", "__bool__", "__int__", "__float__", "__complex__",
                    "__index__", "__dlpack__", "__cuda_array_interface__",
                    "__array_priority__"):
                continue
            try:
                members[name] = describe(inspect.getattr_static(cls, name), name,
                                         method=True)
            except AttributeError:
                continue
            if members[name]["kind"] in ("object", "constant"):
                members[name] = describe(getattr(cls, name), name, method=True)
        classes[path] = {"parameters": describe(cls, class_name).get("parameters"),
                         "members": members}
    return {
        "about": "Names and parameters of the real CuPy, for tests/cupy_standin. "
                 "Regenerate with the command below (no GPU needed).",
        "regenerate": "python -m venv /tmp/cupy-api && /tmp/cupy-api/bin/pip install "
                      f"'cupy-cuda12x=={cupy.__version__}' && /tmp/cupy-api/bin/python "
                      "scripts/dump_cupy_api.py --out tests/cupy_standin/cupy_api.json",
        "package": "cupy-cuda12x",
        "version": cupy.__version__,
        "numpy_version": numpy.__version__,
        "modules": modules,
        "classes": classes,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/cupy_standin/cupy_api.json")
    args = parser.parse_args(argv)
    try:
        import cupy
    except ImportError:
        print("dump_cupy_api: needs the real CuPy: pip install cupy-cuda12x (no GPU needed)",
              file=sys.stderr)
        return 1
    if os.path.abspath(os.path.dirname(cupy.__file__)).startswith(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
        print("dump_cupy_api: this is the stand-in, not the real CuPy", file=sys.stderr)
        return 1
    data = dump()
    folder = os.path.dirname(os.path.abspath(args.out))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json")  # written whole, then renamed
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    count = sum(len(m) for m in data["modules"].values())
    print(f"{args.out}: CuPy {data['version']}, {count} module names, "
          f"{sum(len(c['members']) for c in data['classes'].values())} class members")
    return 0


if __name__ == "__main__":
    sys.exit(main())
