"""``cupy.ndarray`` of the stand-in: a NumPy array kept out of NumPy's reach.

What the real CuPy does and this class copies (``cupy/_core/core.pyx`` and
``_routines_indexing.pyx`` of CuPy 14):

* ``__array__`` raises TypeError: NumPy never gets at device memory implicitly.
* ``__array_ufunc__`` and ``__array_function__`` hand a NumPy function called on a
  device array to the CuPy function of the same name, which refuses NumPy arrays
  among its operands (TypeError ``Unsupported type``); where CuPy has no such function
  they return NotImplemented, and NumPy raises TypeError.
* Operators with a NumPy array on either side raise TypeError; with an object of
  higher ``__array_priority__`` and no ``__array_ufunc__`` (a minires Tensor) they
  return NotImplemented so the other operand's reflected operator runs.
* Integer array indices wrap around (``a[[1, 3]]`` of a 3-element array is
  ``a[[1, 0]]``): a GPU does no bounds check there. Scalar integer indices are
  bounds-checked, as in CuPy.
* Reading values on the host (``get``, ``item``, ``tolist``, ``bool()``, ``float()``,
  ``int()``, printing) is a host synchronisation, and is recorded.
* Methods and keywords are only those of the real ``cupy.ndarray``.

Freshly allocated arrays (``empty``, ``empty_like``) hold NaN (integers: 0xA5 bytes),
as reused GPU memory holds whatever was there: code that reads memory it never wrote
fails visibly.
"""

from __future__ import annotations

import warnings

import numpy

from . import _api
from ._syncs import syncs

_PYTHON_SCALARS = (bool, int, float, complex)


def _cupy():
    import cupy

    return cupy


# --------------------------------------------------------------------------- wrapping


def _wrap(a):
    """A numpy array (or scalar) as a device array; a numpy scalar becomes a 0-d array,
    as CuPy's reductions return 0-d arrays."""
    if isinstance(a, numpy.generic):
        a = numpy.asarray(a)
    obj = ndarray.__new__(ndarray)
    obj._a = a
    return obj


def wrap_result(result, owners=None):
    """Wrap numpy arrays in a function's result (tuples and lists too); an array that
    is the buffer of a device argument (``out=``) comes back as that device array."""
    if isinstance(result, numpy.ndarray):
        if owners and id(result) in owners:
            return owners[id(result)]
        return _wrap(result)
    if isinstance(result, numpy.generic):
        return _wrap(result)
    if isinstance(result, tuple) and not hasattr(result, "_fields"):
        return tuple(wrap_result(r, owners) for r in result)
    if isinstance(result, list):
        return [wrap_result(r, owners) for r in result]
    return result


def host_array_error(where: str, value) -> TypeError:
    return TypeError(
        f"Unsupported type {type(value)} in {where}: a NumPy array lives in host memory "
        "and cannot be an operand of a CuPy operation (CuPy raises TypeError for this, or "
        "silently works on the host; move it with cupy.asarray, or move the device array "
        "with .get())")


def unwrap(value, where: str, owners=None, allow_host: bool = False):
    """Device arrays (also inside lists and tuples) -> their numpy buffers; a NumPy
    array is refused unless ``allow_host`` (a host-to-device copy such as asarray)."""
    if isinstance(value, ndarray):
        if owners is not None:
            owners[id(value._a)] = value
        return value._a
    if isinstance(value, numpy.ndarray):
        if allow_host:
            return value
        raise host_array_error(where, value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(unwrap(v, where, owners, allow_host) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v, where, owners, allow_host) for k, v in value.items()}
    return value


def uninitialized(a: numpy.ndarray) -> numpy.ndarray:
    """Fill a fresh allocation with values no correct program reads."""
    if a.dtype.kind in "fc":
        a.fill(numpy.nan)
    elif a.size:
        a.view(numpy.uint8).fill(0xA5)
    return a


# --------------------------------------------------------------------------- indexing


def index_key(shape, key, where: str):
    """The key as NumPy should see it, with CuPy's semantics: integer arrays (from the
    device, from the host, or lists) wrap around their axis; scalar ints stay
    bounds-checked. Returns (key, has_boolean_mask, has_array_index)."""
    items = list(key) if isinstance(key, tuple) else [key]
    converted = []
    for s in items:
        if isinstance(s, ndarray):
            s = s._a
        elif isinstance(s, (list, tuple)):  # CuPy copies these to the device
            s = numpy.asarray(unwrap(s, where, allow_host=True))
            if s.size == 0:
                s = s.astype(numpy.int32)  # an empty list means no indices, not a mask
        elif isinstance(s, (bool, numpy.bool_)):
            s = numpy.asarray(s)
        converted.append(s)
    consumed = sum(s.ndim if isinstance(s, numpy.ndarray) and s.dtype.kind == "b"
                   else 0 if s is None or s is Ellipsis else 1 for s in converted)
    out, axis, mask, advanced = [], 0, False, False
    for s in converted:
        if s is None:
            out.append(s)
        elif s is Ellipsis:
            axis += len(shape) - consumed
            out.append(s)
        elif isinstance(s, numpy.ndarray):
            advanced = True
            if s.dtype.kind == "b":
                mask = True
                axis += s.ndim
            elif s.dtype.kind in "iu":
                if axis < len(shape) and shape[axis] > 0:
                    s = s % shape[axis]  # no bounds check on a GPU: indices wrap
                axis += 1
            else:
                raise IndexError("arrays used as indices must be of integer or boolean type "
                                 f"(actual: {s.dtype.type})")
            out.append(s)
        else:
            axis += 1
            out.append(s)
    if not any(s is Ellipsis for s in out):
        out.append(Ellipsis)  # NumPy then returns a 0-d array (a view), not a scalar
    return tuple(out), mask, advanced


# --------------------------------------------------------------------------- operators


def _should_use_rop(x, y) -> bool:
    """CuPy's rule (core.pyx): defer to ``y``'s reflected operator when y opts out of
    ufuncs, or has no ``__array_ufunc__`` and a higher ``__array_priority__``."""
    marker = object()
    y_ufunc = getattr(y, "__array_ufunc__", marker)
    if y_ufunc is not marker:
        return y_ufunc is None
    return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)


def _binary(name):
    def op(self, other):
        cupy = _cupy()
        if isinstance(other, ndarray):
            return getattr(cupy, name)(self, other)
        if _should_use_rop(self, other):
            return NotImplemented
        return getattr(numpy, name)(self, other)  # NumPy's ufunc: __array_ufunc__ below

    def rop(self, other):  # CuPy compiles op(x, y) for both sides (c_api_binop_methods)
        return getattr(_cupy(), name)(other, self)

    def iop(self, other):
        return getattr(_cupy(), name)(self, other, out=self)

    return op, rop, iop


def _compare(name, opposite_default):
    def op(self, other):
        cupy = _cupy()
        if isinstance(other, ndarray):
            return getattr(cupy, name)(self, other)
        if _should_use_rop(self, other):
            return NotImplemented
        if name in ("equal", "not_equal") and (
                other is None or type(other).__eq__ is object.__eq__):
            # neither a number nor an array: never equal to an element
            return (cupy.ones if opposite_default else cupy.zeros)(self.shape, dtype=bool)
        if isinstance(other, numpy.ndarray) and other.ndim == 0:
            other = other.item()
        return getattr(numpy, name)(self, other)
    return op


class Flags:
    """``cupy.ndarray.flags``: C_CONTIGUOUS, F_CONTIGUOUS and OWNDATA, nothing else
    (NumPy's ``writeable`` does not exist in CuPy)."""

    def __init__(self, c_contiguous, f_contiguous, owndata):
        self._values = {"C_CONTIGUOUS": c_contiguous, "F_CONTIGUOUS": f_contiguous,
                        "OWNDATA": owndata}

    c_contiguous = property(lambda self: self._values["C_CONTIGUOUS"])
    f_contiguous = property(lambda self: self._values["F_CONTIGUOUS"])
    owndata = property(lambda self: self._values["OWNDATA"])
    fnc = property(lambda self: self.f_contiguous and not self.c_contiguous)
    forc = property(lambda self: self.f_contiguous or self.c_contiguous)

    def __getitem__(self, name):
        if name not in self._values:
            raise KeyError(f"{name} is not defined for cupy.ndarray.flags")
        return self._values[name]

    def __repr__(self):
        return "\n".join(f"  {k} : {v}" for k, v in self._values.items())


# --------------------------------------------------------------------------- ndarray


class ndarray:
    """The stand-in's ``cupy.ndarray``: see the module docstring."""

    __module__ = "cupy"
    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100
    __hash__ = None  # like CuPy's: unhashable

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("cupy.ndarray(memptr=..., strides=...) is not "
                                      "implemented by the CuPy stand-in")
        self._a = uninitialized(numpy.empty(shape, dtype=dtype, order=order))

    # ------------------------------------------------------------------ NumPy protocols
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        cupy = _cupy()
        inout = inputs
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inout += out
            kwargs["out"] = out[0]
        if method not in ("__call__", "outer", "at", "reduce", "accumulate", "reduceat"):
            return NotImplemented
        try:
            func = getattr(cupy, ufunc.__name__)
            if method != "__call__":
                func = getattr(func, method)
        except AttributeError:
            return NotImplemented
        for x in inout:
            if not (type(x) in _PYTHON_SCALARS or isinstance(x, (numpy.generic, ndarray,
                                                                 numpy.ndarray))):
                return NotImplemented
        if ufunc.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal",
                              "not_equal"):
            inputs = tuple(x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x
                           for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        cupy = _cupy()
        try:
            module = cupy
            for part in func.__module__.split(".")[1:]:
                module = getattr(module, part)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func:
            return NotImplemented
        if not all(issubclass(t, (ndarray, numpy.ndarray)) for t in types):
            return NotImplemented
        return cupy_func(*args, **kwargs)

    # ------------------------------------------------------------------ attributes
    shape = property(lambda self: self._a.shape)

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(self._a.mT))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    @property
    def flags(self):
        return Flags(self._a.flags.c_contiguous, self._a.flags.f_contiguous,
                     self._a.flags.owndata)

    @property
    def device(self):
        from ._cuda import Device

        return Device(0)

    def __getattr__(self, name):
        # only attributes the class does not define get here: the real ones that
        # NumPy's ndarray offers under the same name, checked and wrapped
        entry = _api.member_entry("cupy.ndarray", name)
        if entry is None:
            raise _api.no_such_name("'cupy.ndarray' object", name)
        method = getattr(numpy.ndarray, name, None)
        if entry["kind"] != "function" or method is None or name.startswith("_"):
            raise _api.not_implemented("cupy.ndarray", name)
        return _BoundMethod(self, name, entry["parameters"])

    # ------------------------------------------------------------------ host reads
    def get(self, stream=None, order="C", out=None, blocking=True):
        syncs.record("read", "ndarray.get")
        if out is not None:
            if not isinstance(out, numpy.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            numpy.copyto(out, self._a)
            return out
        return numpy.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, numpy.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, not {type(arr)}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"Shape or dtype mismatch: {self.shape} {self.dtype} "
                             f"vs {arr.shape} {arr.dtype}")
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        syncs.record("read", "ndarray.item")
        return self._a.item()

    def tolist(self):
        syncs.record("read", "ndarray.tolist")
        return self._a.tolist()

    def tobytes(self, order="C"):
        syncs.record("read", "ndarray.tobytes")
        return self._a.tobytes(order)

    def __bool__(self):
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False, "
                          "but in future this will result in an error. Use `array.size > 0` "
                          "to check that an array is not empty.", DeprecationWarning,
                          stacklevel=2)
            return False
        if self.size > 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        syncs.record("read", "ndarray.__bool__")
        return bool(self._a)

    def __int__(self):
        syncs.record("read", "ndarray.__int__")
        return int(self._a)

    def __float__(self):
        syncs.record("read", "ndarray.__float__")
        return float(self._a)

    def __complex__(self):
        syncs.record("read", "ndarray.__complex__")
        return complex(self._a)

    def __repr__(self):
        syncs.record("read", "ndarray.__repr__")
        return repr(self._a)

    def __str__(self):
        syncs.record("read", "ndarray.__str__")
        return str(self._a)

    def __format__(self, format_spec):
        syncs.record("read", "ndarray.__format__")
        return format(self._a, format_spec)

    def __reduce__(self):
        syncs.record("read", "ndarray.__reduce__")
        return _cupy().array, (self._a.copy(),)

    # ------------------------------------------------------------------ copies
    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    # ------------------------------------------------------------------ containers
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        key, mask, _ = index_key(self.shape, key, "cupy.ndarray.__getitem__")
        if mask:  # the result's size depends on the mask: CuPy reads its count
            syncs.record("implicit", "ndarray.__getitem__ (boolean mask)")
        return _wrap(self._a[key])

    def __setitem__(self, key, value):
        key, _, advanced = index_key(self.shape, key, "cupy.ndarray.__setitem__")
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, numpy.ndarray):
            if not advanced and value.ndim != 0:  # CuPy fills from host scalars only
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        elif isinstance(value, (list, tuple)):
            if not advanced:
                raise TypeError(f"Unsupported type {type(value)}")
            value = numpy.asarray(unwrap(value, "cupy.ndarray.__setitem__", allow_host=True))
        elif not (type(value) in _PYTHON_SCALARS or isinstance(value, numpy.generic)):
            raise TypeError(f"Unsupported type {type(value)}")
        self._a[key] = value

    # ------------------------------------------------------------------ methods that
    # differ from NumPy's (the rest go through __getattr__)
    def fill(self, value):
        if isinstance(value, numpy.ndarray) and value.shape != ():
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        if isinstance(value, ndarray):
            if value.ndim != 0:
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value._a
        self._a.fill(value)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _wrap(self._a.astype(dtype, order=order, casting=casting or "unsafe",
                                    copy=copy))

    def view(self, dtype=None, type=None):
        if type is not None:
            raise NotImplementedError("cupy.ndarray.view(type=...) is not implemented by "
                                      "the CuPy stand-in")
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    def dot(self, b, out=None):
        return _cupy().dot(self, b, out)

    def take(self, indices, axis=None, out=None):
        return _cupy().take(self, indices, axis, out)

    def nonzero(self):
        syncs.record("implicit", "ndarray.nonzero")
        return tuple(_wrap(i) for i in self._a.nonzero())

    def scatter_add(self, slices, value):
        _cupy_x().scatter_add(self, slices, value)

    def scatter_max(self, slices, value):
        _cupy_x().scatter_max(self, slices, value)

    def scatter_min(self, slices, value):
        _cupy_x().scatter_min(self, slices, value)


def _cupy_x():
    import cupyx

    return cupyx


for _name, _ufunc in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                      ("matmul", "matmul"), ("truediv", "true_divide"),
                      ("floordiv", "floor_divide"), ("mod", "remainder"),
                      ("lshift", "left_shift"), ("rshift", "right_shift"),
                      ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")]:
    _op, _rop, _iop = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _op)
    setattr(ndarray, f"__r{_name}__", _rop)
    setattr(ndarray, f"__i{_name}__", _iop)

for _name, _ufunc, _default in [("lt", "less", False), ("le", "less_equal", False),
                                ("eq", "equal", False), ("ne", "not_equal", True),
                                ("gt", "greater", False), ("ge", "greater_equal", False)]:
    setattr(ndarray, f"__{_name}__", _compare(_ufunc, _default))


def _pow(self, other, modulo=None):
    cupy = _cupy()
    if isinstance(other, ndarray):
        return cupy.power(self, other)
    if _should_use_rop(self, other):
        return NotImplemented
    return numpy.power(self, other)


ndarray.__pow__ = _pow
ndarray.__rpow__ = lambda self, other, modulo=None: _cupy().power(other, self)
ndarray.__ipow__ = lambda self, other: _cupy().power(self, other, out=self)
ndarray.__divmod__ = lambda self, other: _cupy().divmod(self, other)
ndarray.__rdivmod__ = lambda self, other: _cupy().divmod(other, self)
ndarray.__neg__ = lambda self: _cupy().negative(self)
ndarray.__pos__ = lambda self: _cupy().positive(self)
ndarray.__abs__ = lambda self: _cupy().absolute(self)
ndarray.__invert__ = lambda self: _cupy().invert(self)


class _BoundMethod:
    """A real ``cupy.ndarray`` method that NumPy's ndarray has under the same name:
    keywords checked against CuPy's, arguments unwrapped, results wrapped."""

    def __init__(self, array, name, params):
        self.array, self.name, self.params = array, name, params

    def __call__(self, *args, **kwargs):
        where = f"cupy.ndarray.{self.name}"
        _api.check_call(where, self.params, args, kwargs)
        owners = {}
        args = unwrap(args, where, owners)
        kwargs = unwrap(kwargs, where, owners)
        return wrap_result(getattr(self.array._a, self.name)(*args, **kwargs), owners)


# --------------------------------------------------------------------------- functions


class Function:
    """A real CuPy function with a NumPy function of the same name: the call is checked
    against CuPy's parameters, device arrays are unwrapped (NumPy arrays refused unless
    the function copies host data to the device), results come back on the device."""

    def __init__(self, qualname, fn, params, allow_host=False, implicit_sync=False):
        self.qualname, self.fn, self.params = qualname, fn, params
        self.allow_host, self.implicit_sync = allow_host, implicit_sync
        self.__name__ = qualname.rpartition(".")[2]
        self.__qualname__ = self.__name__
        self.__module__ = qualname.rpartition(".")[0]
        self.__doc__ = f"{qualname} of the CuPy stand-in (NumPy's {self.__name__})"

    def __call__(self, *args, **kwargs):
        _api.check_call(self.qualname, self.params, args, kwargs)
        if self.implicit_sync:
            syncs.record("implicit", self.qualname)
        owners = {}
        args = unwrap(args, self.qualname, owners, self.allow_host)
        kwargs = unwrap(kwargs, self.qualname, owners, self.allow_host)
        return wrap_result(self.fn(*args, **kwargs), owners)

    def __repr__(self):
        return f"<function {self.qualname} (CuPy stand-in)>"


def _ufunc_operand(x, where):
    if isinstance(x, ndarray):
        return x._a
    if type(x) in _PYTHON_SCALARS or isinstance(x, numpy.generic):
        return x
    raise TypeError(f"Unsupported type {type(x)}") if not isinstance(x, numpy.ndarray) \
        else host_array_error(where, x)


class ufunc:
    """``cupy.ufunc``: operands must be device arrays or scalars (CuPy's
    ``_preprocess_args`` raises TypeError ``Unsupported type`` for anything else,
    NumPy arrays and lists included)."""

    __module__ = "cupy"

    def __init__(self, name, fn, params, nin, nout):
        self.name, self._fn, self._params = f"cupy_{name}", fn, params
        self.__name__, self.nin, self.nout = name, nin, nout
        self.nargs = nin + nout

    def _out(self, out, owners):
        if out is None:
            return None
        if isinstance(out, tuple):
            return tuple(self._out(o, owners) for o in out)
        if not isinstance(out, ndarray):
            raise TypeError(f"output must be a cupy.ndarray, not {type(out)}")
        owners[id(out._a)] = out
        return out._a

    def __call__(self, *args, **kwargs):
        where = f"cupy.{self.__name__}"
        _api.check_call(where, self._params, args, kwargs)
        owners = {}
        inputs = [_ufunc_operand(x, where) for x in args[:self.nin]]
        outs = [self._out(o, owners) for o in args[self.nin:]]
        if "out" in kwargs:
            kwargs = dict(kwargs, out=self._out(kwargs["out"], owners))
        return wrap_result(self._fn(*inputs, *outs, **kwargs), owners)

    def _method(self, method, params):
        fn = getattr(self._fn, method, None)
        if not isinstance(self._fn, numpy.ufunc) or fn is None:
            raise _api.not_implemented(f"cupy.{self.__name__}", method)
        where = f"cupy.{self.__name__}.{method}"

        def call(*args, **kwargs):
            _api.check_call(where, params, args, kwargs)
            owners = {}
            args = unwrap(args, where, owners)
            kwargs = unwrap(kwargs, where, owners)
            return wrap_result(fn(*args, **kwargs), owners)
        return call

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"cupy.{self.__name__}.at: a must be a cupy.ndarray")
        key, _, _ = index_key(a.shape, indices, f"cupy.{self.__name__}.at")
        operands = () if b is None else (_ufunc_operand(b, f"cupy.{self.__name__}.at"),)
        self._fn.at(a._a, key, *operands)

    def __getattr__(self, name):
        entry = _api.member_entry("cupy.ufunc", name)
        if entry is None:
            raise _api.no_such_name("'cupy.ufunc' object", name)
        if entry["kind"] != "function" or name.startswith("_"):
            raise _api.not_implemented(f"cupy.{self.__name__}", name)
        return self._method(name, entry["parameters"])

    def __repr__(self):
        return f"<ufunc 'cupy_{self.__name__}'>"
