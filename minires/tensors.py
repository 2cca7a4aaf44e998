"""``Tensor`` and the factories that make tensors (``tensor``, ``zeros``, ``randn``, ...).

A ``Tensor`` wraps an xp array (numpy or cupy) and remembers how it was computed: its
``grad_fn`` is the graph node of the op that made it (see ``autograd.py``). The
operator methods (``a + b``, ``x.sum()``, ``x.relu()``) call the ops of
``minires.ops``, and ``backward()`` calls the engine of ``minires.autograd``; both are
imported inside the methods, when first called, because the ops and the engine build
on this file (``docs/architecture.md``: the layers).

This module is ``minires.tensors``; ``mr.tensor`` is the factory function, as in PyTorch.
"""

from __future__ import annotations

import numpy

from . import backend
from .autograd_safety import VersionCounter, check_in_place

# --------------------------------------------------------------------------- Tensor

_DEFAULT_FLOAT = numpy.float32

def _to_array(data, dtype=None, device=None):
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_cupy_array(data) or isinstance(data, numpy.ndarray):
        array = data
    elif isinstance(data, numpy.generic):  # a numpy scalar, e.g. from x.sum(): keep its dtype
        array = numpy.asarray(data)
    else:  # Python scalars and nested lists: floats default to float32, as in PyTorch
        array = numpy.asarray(data)
        if array.dtype == numpy.float64 and dtype is None:
            array = array.astype(_DEFAULT_FLOAT)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    if device is not None:
        array = backend.to_device(array, device)
    return array


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    ``data`` is the raw numpy/cupy array; ``grad`` the gradient (a Tensor) after
    ``backward()``; ``grad_fn`` the node that made it (None for leaves).
    """

    __array_priority__ = 1000  # so numpy_array * tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None, device=None):
        self.data = _to_array(data, dtype, device)
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients (got {self.dtype})"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.grad_fn = None
        self._hooks = []
        self._version_counter = VersionCounter()

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        """The sizes of the dimensions, as a tuple: ``(N, C, H, W)`` for images."""
        return tuple(self.data.shape)

    @property
    def dtype(self):
        """The NumPy dtype of the data (``mr.float32`` for the factories' default)."""
        return self.data.dtype

    @property
    def device(self) -> str:
        """Where the data lives: ``'cpu'`` (a NumPy array) or ``'cuda'`` (CuPy)."""
        return backend.device_of(self.data)

    @property
    def ndim(self) -> int:
        """The number of dimensions (``len(shape)``)."""
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        """True for a tensor that no recorded op made (inputs, parameters):
        backward writes ``.grad`` on leaves only."""
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        """How many in-place changes the array has seen (PyTorch's ``tensor._version``)."""
        return self._version_counter.value

    def size(self, dim=None):
        """The shape, or with ``dim`` the size of that one dimension."""
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        """The number of dimensions, like ``ndim``."""
        return self.ndim

    def numel(self) -> int:
        """The number of elements (the product of the shape)."""
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self) -> str:
        body = numpy.array2string(backend.to_numpy(self.data), separator=", ", precision=4,
                                  prefix="tensor(")
        extra = ""
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self.dtype not in (numpy.float32, numpy.int64, numpy.bool_):
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn={self.grad_fn!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ----------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Compute d self / d leaf for every leaf that requires grad, into ``leaf.grad``
        (``minires.autograd.backward``)."""
        _autograd().backward(self, gradient, retain_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor
        replaces the gradient. Returns a handle with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that "
                               "does not require grad")
        hooks = self._hooks if self.grad_fn is None else self.grad_fn.hooks
        hooks.append(hook)
        return _RemovableHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for a non-leaf tensor too (leaves always keep it)."""
        if self.grad_fn is None:
            return

        def keep(grad, tensor=self):
            tensor.grad = grad if tensor.grad is None else Tensor(tensor.grad.data + grad.data)

        self.grad_fn.hooks.append(keep)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (shares memory and the version counter, as
        in PyTorch: an in-place change of the detached tensor is seen by the graph)."""
        out = Tensor(self.data)
        out._version_counter = self._version_counter
        return out

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Start (or stop) recording this tensor's graph; in place, returns self.
        Only floating-point tensors can require gradients."""
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"only floating point tensors can require grad (got {self.dtype})")
        self.requires_grad = requires_grad
        return self

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> numpy.ndarray:
        """The data as a NumPy array, sharing memory (CPU tensors that do not
        require grad only: ``t.detach().cpu().numpy()`` otherwise)."""
        if self.requires_grad:
            raise RuntimeError("numpy(): can't call numpy() on a tensor that requires grad; "
                               "use tensor.detach().numpy()")
        if self.device != "cpu":
            raise TypeError("numpy(): tensor is on cuda; use tensor.cpu().numpy()")
        return self.data

    def tolist(self):
        """The data as (nested) Python lists of numbers, copied to the host."""
        return backend.to_numpy(self.data).tolist()

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to Python "
                             f"scalars, got shape {self.shape}")
        backend.check_pending()  # reading a GPU value waits for the GPU anyway
        return self.data.reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def to(self, device=None, dtype=None) -> Tensor:
        """``to('cuda')``, ``to('cpu')``, ``to(dtype)`` or both; differentiable."""
        if device is not None and not isinstance(device, (str, Tensor)):
            device, dtype = None, device  # to(mr.float64)
        if isinstance(device, Tensor):
            device, dtype = device.device, device.dtype
        out = self
        if dtype is not None and numpy.dtype(dtype) != self.dtype:
            from .ops.basic import cast
            out = cast(out, dtype=numpy.dtype(dtype))
        if device is not None and backend.normalize_device(device) != self.device:
            from .ops.basic import to_device
            out = to_device(out, device=backend.normalize_device(device))
        return out

    def cpu(self) -> Tensor:
        """This tensor on the CPU (itself if it is there already); differentiable."""
        return self.to("cpu")

    def cuda(self) -> Tensor:
        """This tensor on the GPU (itself if it is there already); differentiable."""
        return self.to("cuda")

    def float(self) -> Tensor:
        """This tensor as float32 (itself if it is already); differentiable."""
        return self.to(numpy.float32)

    def double(self) -> Tensor:
        """This tensor as float64 (itself if it is already); differentiable."""
        return self.to(numpy.float64)

    def long(self) -> Tensor:
        """This tensor as int64 (itself if it is already)."""
        return self.to(numpy.int64)

    def clone(self) -> Tensor:
        """A copy of the data; in the graph when this tensor requires grad
        (the gradient flows back to it)."""
        from .ops.basic import mul
        return mul(self, 1) if self.requires_grad else Tensor(self.data.copy())

    # ----------------------------------------------------------------- in place
    # As in PyTorch: allowed on tensors outside the graph and under no_grad() (the
    # hand-written SGD step ``w -= lr * w.grad``); each bumps the version counter so a
    # graph that saved the old values refuses to backward.

    def __iadd__(self, other):
        return self._inplace("add_", lambda a, b: _xp_of(a).add(a, b, out=a), other)

    def __isub__(self, other):
        return self._inplace("sub_", lambda a, b: _xp_of(a).subtract(a, b, out=a), other)

    def __imul__(self, other):
        return self._inplace("mul_", lambda a, b: _xp_of(a).multiply(a, b, out=a), other)

    def __itruediv__(self, other):
        return self._inplace("div_", lambda a, b: _xp_of(a).divide(a, b, out=a), other)

    def add_(self, other, *, alpha=1):
        """In place ``self += alpha * other`` (broadcast); returns self.
        Allowed on tensors outside the graph or under ``no_grad()``, as in PyTorch."""
        return self.__iadd__(other if alpha == 1 else _scaled(other, alpha))

    def sub_(self, other, *, alpha=1):
        """In place ``self -= alpha * other`` (broadcast); returns self."""
        return self.__isub__(other if alpha == 1 else _scaled(other, alpha))

    def mul_(self, other):
        """In place ``self *= other`` (broadcast); returns self."""
        return self.__imul__(other)

    def div_(self, other):
        """In place ``self /= other`` (broadcast); returns self."""
        return self.__itruediv__(other)

    def zero_(self):
        """Set every element to 0 in place; returns self."""
        return self._inplace("zero_", lambda a, _: a.fill(0), 0)

    def fill_(self, value):
        """Set every element to ``value`` in place; returns self."""
        return self._inplace("fill_", lambda a, v: a.fill(v), value)

    def copy_(self, src):
        """Copy ``src`` (broadcast, cast to this dtype, moved to this device) into self."""
        src = src if isinstance(src, Tensor) else Tensor(_to_array(src))
        device = self.device

        def update(a, b):
            _xp_of(a).copyto(a, backend.to_device(b, device), casting="unsafe")

        return self._inplace("copy_", update, src, any_device=True)

    def __setitem__(self, index, value):
        index = _index_arrays(index)
        return self._inplace("__setitem__", lambda a, v: a.__setitem__(index, v), value)

    def _inplace(self, op: str, update, other, any_device: bool = False) -> Tensor:
        if _autograd().is_grad_enabled():
            check_in_place(op, self, other)
        if isinstance(other, Tensor):
            if other.device != self.device and not any_device:
                raise RuntimeError(f"{op}: expected both tensors on the same device, got "
                                   f"{self.device} and {other.device}")
            other = other.data
        try:
            update(self.data, other)
        except (TypeError, ValueError, IndexError) as error:
            raise _inplace_error(op, self, other, error) from None
        self._version_counter.value += 1
        return self

    # ----------------------------------------------------------------- NumPy
    # ``array * tensor``: NumPy calls its ufunc with the tensor as an operand, which
    # lands here and becomes the Tensor op (as Python's reflected operators would).
    # Any other NumPy function would treat the tensor as an opaque object and lose the
    # gradient, so it is refused with the name of the minires op to use.

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = _numpy_operator(ufunc.__name__)
        if method == "__call__" and not kwargs and op is not None and len(inputs) == 2:
            return op(*inputs)
        raise TypeError(_numpy_refusal(f"numpy.{ufunc.__name__}", ufunc.__name__, kwargs))

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(_numpy_refusal(f"numpy.{func.__name__}", func.__name__, {}))

    def __array__(self, dtype=None, copy=None):
        """``numpy.asarray(tensor)``, as ``tensor.numpy()``: CPU tensors without grad."""
        array = self.numpy()
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return array.copy() if copy else array

    # ----------------------------------------------------------------- ops
    # The operators delegate to minires.ops (imported lazily: ops import this module).

    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(other, self)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __pow__(self, exponent):
        return _ops().pow(self, exponent)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    # comparisons give boolean tensors outside the graph
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    __hash__ = object.__hash__  # tensors are used as dict keys by identity

    def exp(self):
        """Element-wise ``e ** x``, as ``mr.exp``."""
        return _ops().exp(self)

    def log(self):
        """Element-wise natural logarithm, as ``mr.log``."""
        return _ops().log(self)

    def sqrt(self):
        """Element-wise square root, as ``mr.sqrt``."""
        return _ops().sqrt(self)

    def relu(self):
        """Element-wise ``max(x, 0)``, as ``F.relu``."""
        return _ops().relu(self)

    def sigmoid(self):
        """Element-wise ``1 / (1 + exp(-x))``, as ``F.sigmoid``."""
        return _ops().sigmoid(self)

    def tanh(self):
        """Element-wise hyperbolic tangent, as ``F.tanh``."""
        return _ops().tanh(self)

    def abs(self):
        """Element-wise absolute value (gradient 0 at 0)."""
        return _ops().abs(self)

    def reshape(self, *shape):
        """The same elements in another shape: ``x.reshape(N, -1)`` or
        ``x.reshape((N, -1))``; one size may be -1 (inferred)."""
        return _ops().reshape(self, *shape)

    def view(self, *shape):
        """The same elements in another shape, like ``reshape`` (minires has no
        strides of its own: the array is a view where NumPy can make one)."""
        return _ops().reshape(self, *shape)

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge dimensions ``start_dim`` to ``end_dim`` into one:
        ``x.flatten(1)`` turns (N, C, H, W) into (N, C*H*W)."""
        return _ops().flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        """Reorder the dimensions: ``x.permute(0, 2, 3, 1)`` turns (N, C, H, W)
        into (N, H, W, C)."""
        return _ops().permute(self, *dims)

    def transpose(self, dim0, dim1):
        """Swap two dimensions, ``dim0`` and ``dim1``."""
        return _ops().transpose(self, dim0, dim1)

    @property
    def T(self):
        """All dimensions reversed: the transpose of a matrix."""
        return _ops().permute(self, *reversed(range(self.ndim)))

    def sum(self, dim=None, keepdim=False):
        """The sum over ``dim`` (an int, a tuple, or None for all); ``keepdim``
        keeps the summed dimensions with size 1."""
        return _ops().sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        """The mean over ``dim`` (an int, a tuple, or None for all)."""
        return _ops().mean(self, dim, keepdim)

    def var(self, dim=None, keepdim=False, unbiased=True):
        """The variance over ``dim``; ``unbiased=True`` divides by n - 1, as PyTorch."""
        return _ops().var(self, dim, keepdim, unbiased)

    def max(self, dim=None, keepdim=False):
        """The maximum: of all elements, or over one ``dim`` as ``(values, indices)``."""
        return _ops().max(self, dim, keepdim)

    def amax(self, dim=(), keepdim=False):
        """The maximum over one or several dims (all for ``dim=()``); tied maxima
        share the gradient equally."""
        return _ops().amax(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        """The index of the maximum (over the flattened tensor, or along ``dim``);
        not differentiable."""
        from .ops.reduce import argmax_array
        return Tensor(argmax_array(self.data, dim, keepdim))

    def softmax(self, dim):
        """``exp(x) / sum(exp(x))`` along ``dim``, as ``F.softmax``."""
        return _ops().softmax(self, dim)

    def log_softmax(self, dim):
        """``log(softmax(x))`` along ``dim``, computed stably, as ``F.log_softmax``."""
        return _ops().log_softmax(self, dim)


def _ops():
    from . import ops
    return ops


def _autograd():
    from . import autograd
    return autograd


def _xp_of(array):
    return backend.array_module(array)


def _scaled(other, alpha):
    return other * alpha  # a Tensor or a number: out of place, other stays untouched


def _index_arrays(index):
    """Tensors inside an index become their arrays (integer or boolean masks)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _inplace_error(op: str, tensor: Tensor, other, error: Exception) -> Exception:
    other_shape = tuple(getattr(other, "shape", ()))
    other_dtype = getattr(other, "dtype", type(other).__name__)
    text = str(error)
    if "read-only" in text:
        return RuntimeError(f"{op}: the tensor's array is read-only (a view handed to a "
                            "backward pass or a hook?); work on a copy")
    if "broadcast" in text or "shape" in text:
        return RuntimeError(f"{op}: output with shape {tensor.shape} doesn't match the "
                            f"broadcast shape of {tensor.shape} and {other_shape}")
    if "cast" in text:
        return RuntimeError(f"{op}: result type {other_dtype} can't be cast to the desired "
                            f"output type {tensor.dtype}")
    return type(error)(f"{op} on a tensor of shape {tensor.shape} and dtype {tensor.dtype} "
                       f"failed: {text}")


def _numpy_operator(name: str):
    """The Tensor op for the NumPy ufuncs behind Python's operators, else None."""
    arithmetic = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div",
                  "true_divide": "div", "matmul": "matmul"}
    comparisons = {"equal": ("__eq__", "__eq__"), "not_equal": ("__ne__", "__ne__"),
                   "less": ("__lt__", "__gt__"), "less_equal": ("__le__", "__ge__"),
                   "greater": ("__gt__", "__lt__"), "greater_equal": ("__ge__", "__le__")}
    if name in arithmetic:
        return getattr(_ops(), arithmetic[name])
    if name in comparisons:
        def compare(a, b):  # the Tensor's own comparison, mirrored when it is on the right
            if isinstance(a, Tensor):
                return getattr(a, comparisons[name][0])(b)
            return getattr(b, comparisons[name][1])(a)
        return compare
    return None


_NUMPY_NAMES = {"absolute": "abs", "negative": "neg", "divide": "div", "true_divide": "div",
                "power": "pow", "amax": "amax", "concatenate": "cat"}


def _numpy_refusal(what: str, name: str, kwargs: dict) -> str:
    """The message for a NumPy function called on a Tensor: which minires op to use."""
    if kwargs.get("out") is not None:
        return (f"{what} with out=: a NumPy array cannot hold a Tensor's result in place; "
                "write array = array + tensor (a Tensor), or use tensor.detach().numpy()")
    import minires

    ours = _NUMPY_NAMES.get(name, name)
    hints = []
    if hasattr(minires, ours):
        hints.append(f"mr.{ours}(x)")
    if hasattr(Tensor, ours):
        hints.append(f"x.{ours}()")
    if not hints and hasattr(minires.nn.functional, ours):
        hints.append(f"mr.nn.functional.{ours}(x)")
    if not hints and hasattr(minires.ops, ours):
        hints.append(f"mr.ops.{ours}(x)")
    use = " or ".join(hints) if hints else "the minires op (mr.*, mr.nn.functional)"
    return (f"{what} was called on a minires Tensor: NumPy functions do not record "
            f"gradients. Use {use} instead, or x.detach().numpy() for a plain NumPy array.")


class _RemovableHandle:
    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


# --------------------------------------------------------------------------- factories


def as_tensor(x, dtype=None, device=None) -> Tensor:
    """``x`` itself if it is a Tensor (and matches), else a new leaf Tensor."""
    if isinstance(x, Tensor) and dtype is None and device is None:
        return x
    if isinstance(x, Tensor):
        return x.to(device=device, dtype=dtype)
    return Tensor(x, dtype=dtype, device=device)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` (like ``torch.tensor``)."""
    array = _to_array(data, dtype, device)
    array = array.copy() if array is (data.data if isinstance(data, Tensor) else data) else array
    return Tensor(array, requires_grad=requires_grad)


def _shape(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _xp(device):
    return backend.array_module(backend.to_device(numpy.empty(0), device or "cpu"))


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of zeros of shape ``size`` (``zeros(2, 3)`` or ``zeros((2, 3))``),
    float32 unless ``dtype`` says otherwise."""
    xp = _xp(device)
    return Tensor(xp.zeros(_shape(size), dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of ones of shape ``size`` (``ones(2, 3)`` or ``ones((2, 3))``),
    float32 unless ``dtype`` says otherwise."""
    xp = _xp(device)
    return Tensor(xp.ones(_shape(size), dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor of shape ``size`` (a tuple) filled with ``fill_value``."""
    xp = _xp(device)
    return Tensor(xp.full(tuple(size), fill_value, dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples from the generator seeded by ``manual_seed``."""
    xp = _xp(device)
    data = backend.generator(xp).standard_normal(_shape(size), dtype=_float(dtype))
    return Tensor(data, requires_grad=requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) of shape ``size``, from the generator seeded by
    ``manual_seed``."""
    xp = _xp(device)
    data = backend.generator(xp).random(_shape(size), dtype=_float(dtype))
    return Tensor(data, requires_grad=requires_grad)


def randint(low, high, size, dtype=numpy.int64, device=None) -> Tensor:
    """Integers drawn uniformly from [low, high), of shape ``size`` (a tuple);
    int64 unless ``dtype`` says otherwise."""
    xp = _xp(device)
    return Tensor(backend.generator(xp).integers(low, high, size=tuple(size), dtype=dtype))


def arange(*args, dtype=None, device=None) -> Tensor:
    """The numbers ``start, start + step, ...`` below ``end``: ``arange(5)``,
    ``arange(2, 10, 2)``, as ``numpy.arange``."""
    xp = _xp(device)
    return Tensor(xp.arange(*args, dtype=dtype))


def _float(dtype):
    dtype = numpy.dtype(dtype or _DEFAULT_FLOAT)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"random floats must be float32 or float64, got {dtype}")
    return dtype


def zeros_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    """Zeros of the shape, dtype and device of ``t``."""
    xp = backend.array_module(t.data)
    return Tensor(xp.zeros(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    """Ones of the shape, dtype and device of ``t``."""
    xp = backend.array_module(t.data)
    return Tensor(xp.ones(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)
