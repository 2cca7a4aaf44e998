"""Tensor, Function and the backward engine: reverse-mode autodiff in one page.

A ``Tensor`` wraps an xp array (numpy or cupy). Calling an op runs a ``Function``:
its ``forward`` computes on plain arrays and stores what its ``backward`` will need in
a ``Context``. When any input requires a gradient, that context becomes the output's
``grad_fn``, a node of the graph pointing back to the inputs. ``loss.backward()``
walks the nodes in reverse topological order, handing each ``backward`` the gradient
of the loss with respect to that node's output.
"""

from __future__ import annotations

import contextlib
from collections import namedtuple

import numpy

from . import backend

# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, enabled
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context manager (and decorator): ops inside record no graph, as ``torch.no_grad``."""
    return _grad_mode(False)


def enable_grad():
    return _grad_mode(True)


# --------------------------------------------------------------------------- Function


class Context:
    """What a ``Function`` remembers between forward and backward; also the graph node.

    ``Tensor.grad_fn`` is the Context of the op that made the tensor.
    """

    def __init__(self, function, xp, inputs, needs_input_grad):
        self.function = function
        self.xp = xp
        self.inputs = inputs  # the input Tensors: the edges of the graph
        self.needs_input_grad = needs_input_grad
        self.hooks = []  # Tensor.register_hook on the output of this node
        self._saved = ()
        self._freed = False

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        self.check_not_freed()
        return self._saved

    def check_not_freed(self) -> None:
        if self._freed:
            raise RuntimeError(
                f"{self.function.__name__}.backward: trying to backward through the graph a "
                "second time; its saved arrays were freed after the first backward. "
                "Pass retain_graph=True to the first backward() to keep them."
            )

    def release(self) -> None:
        """Free saved arrays and the edges once backward is done (unless retain_graph)."""
        self._saved = ()
        self._freed = True
        for name in list(vars(self)):
            if name not in ("function", "xp", "inputs", "needs_input_grad", "hooks",
                            "_saved", "_freed"):
                delattr(self, name)

    def name(self) -> str:
        return f"{self.function.__name__}Backward"

    def __repr__(self) -> str:
        return f"<{self.name()}>"


class Function:
    """Base class of every differentiable op.

    Subclasses define two static methods on plain xp arrays::

        forward(ctx, *arrays, **attrs) -> array
        backward(ctx, gy) -> one gradient (or None) per positional input

    Positional arguments are tensor inputs, keyword arguments are settings. Every
    subclass is recorded in ``Function.registry`` so tests can enumerate all ops.
    """

    registry: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Function.registry[f"{cls.__module__}.{cls.__qualname__}"] = cls

    @staticmethod
    def forward(ctx, *arrays, **attrs):
        raise NotImplementedError("a Function subclass must define forward")

    @staticmethod
    def backward(ctx, gy):
        raise NotImplementedError("a Function subclass must define backward")

    @classmethod
    def apply(cls, *inputs, **attrs) -> Tensor:
        tensors = [as_tensor(x) for x in inputs]
        arrays = [t.data for t in tensors]
        _check_same_device(cls.__name__, tensors)
        xp = backend.array_module(*arrays)
        needs = tuple(t.requires_grad for t in tensors)
        record = _grad_enabled and any(needs)
        ctx = Context(cls, xp, tuple(tensors) if record else (), needs)
        y = cls.forward(ctx, *arrays, **attrs)
        out = Tensor(y, requires_grad=record)
        if record:
            out.grad_fn = ctx
        return out


def _check_same_device(op: str, tensors) -> None:
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op}: expected all tensors to be on the same device, but found tensors on "
            f"{' and '.join(sorted(devices))} (shapes {[t.shape for t in tensors]}). "
            "Move them with .to(device) first."
        )


# --------------------------------------------------------------------------- engine


def _topological_order(root: Context) -> list:
    """Nodes reachable from ``root``, each after every node that consumes its output.

    Iterative depth-first search: a recursive one overflows Python's stack on deep graphs.
    """
    order, visited = [], {id(root)}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, parents = stack[-1]
        for tensor in parents:
            parent = tensor.grad_fn
            if parent is not None and id(parent) not in visited:
                visited.add(id(parent))
                stack.append((parent, iter(parent.inputs)))
                break
        else:  # every parent done: node is finished
            stack.pop()
            order.append(node)
    order.reverse()  # root first, leaves' consumers last
    return order


def run_backward(root: Tensor, gradient, retain_graph: bool) -> None:
    if root.grad_fn is None:  # a leaf: its gradient is the seed itself
        _accumulate_leaf(root, gradient)
        return
    grads = {id(root.grad_fn): gradient}  # node -> d loss / d (node's output)
    for node in _topological_order(root.grad_fn):
        gy = grads.pop(id(node), None)
        if gy is None:  # no gradient flowed here (e.g. only through non-grad outputs)
            continue
        for hook in node.hooks:
            result = hook(Tensor(gy))
            if result is not None:
                gy = as_tensor(result).data
        node.check_not_freed()
        gxs = node.function.backward(node, gy)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(node.inputs):
            raise RuntimeError(
                f"{node.function.__name__}.backward returned {len(gxs)} gradients for "
                f"{len(node.inputs)} inputs"
            )
        for tensor, gx in zip(node.inputs, gxs):
            if gx is None or not tensor.requires_grad:
                continue
            if gx.shape != tensor.shape:
                raise RuntimeError(
                    f"{node.function.__name__}.backward returned a gradient of shape "
                    f"{gx.shape} for an input of shape {tensor.shape}"
                )
            if tensor.grad_fn is None:
                _accumulate_leaf(tensor, gx)
            else:
                key = id(tensor.grad_fn)
                # out of place: gx may be an array that another branch also holds
                grads[key] = gx if key not in grads else grads[key] + gx
        if not retain_graph:
            node.release()


def _accumulate_leaf(tensor: Tensor, g) -> None:
    for hook in tensor._hooks:
        result = hook(Tensor(g))
        if result is not None:
            g = as_tensor(result).data
    if g.dtype != tensor.dtype:
        g = g.astype(tensor.dtype)
    if tensor.grad is None:
        tensor.grad = Tensor(g)
    else:  # gradients of leaves add up across backward calls, as in PyTorch
        tensor.grad = Tensor(tensor.grad.data + g)


# --------------------------------------------------------------------------- Tensor

_DEFAULT_FLOAT = numpy.float32

MaxResult = namedtuple("MaxResult", ["values", "indices"])  # like torch.return_types.max


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

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
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
        """Compute d self / d leaf for every leaf that requires grad, into ``leaf.grad``."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and has no grad_fn "
                "(did you compute it under no_grad(), or forget requires_grad=True?)"
            )
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(
                    f"backward(): grad can be implicitly created only for scalar outputs, "
                    f"but this tensor has shape {self.shape}; pass gradient= of that shape"
                )
            g = backend.array_module(self.data).ones_like(self.data)
        else:
            g = _to_array(gradient, dtype=self.dtype)
            if backend.device_of(g) != self.device:
                raise RuntimeError(f"backward(): gradient is on {backend.device_of(g)} but "
                                   f"the tensor is on {self.device}")
            if tuple(g.shape) != self.shape:
                raise RuntimeError(f"backward(): gradient has shape {tuple(g.shape)} but the "
                                   f"tensor has shape {self.shape}")
        run_backward(self, g, retain_graph)

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
        """The same data, cut from the graph (shares memory, as in PyTorch)."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"only floating point tensors can require grad (got {self.dtype})")
        self.requires_grad = requires_grad
        return self

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> numpy.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy(): can't call numpy() on a tensor that requires grad; "
                               "use tensor.detach().numpy()")
        if self.device != "cpu":
            raise TypeError("numpy(): tensor is on cuda; use tensor.cpu().numpy()")
        return self.data

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def item(self):
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
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def float(self) -> Tensor:
        return self.to(numpy.float32)

    def double(self) -> Tensor:
        return self.to(numpy.float64)

    def long(self) -> Tensor:
        return self.to(numpy.int64)

    def clone(self) -> Tensor:
        from .ops.basic import mul
        return mul(self, 1) if self.requires_grad else Tensor(self.data.copy())

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
        return _ops().exp(self)

    def log(self):
        return _ops().log(self)

    def sqrt(self):
        return _ops().sqrt(self)

    def relu(self):
        return _ops().relu(self)

    def sigmoid(self):
        return _ops().sigmoid(self)

    def tanh(self):
        return _ops().tanh(self)

    def abs(self):
        return _ops().abs(self)

    def reshape(self, *shape):
        return _ops().reshape(self, *shape)

    def view(self, *shape):
        return _ops().reshape(self, *shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops().flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        return _ops().permute(self, *dims)

    def transpose(self, dim0, dim1):
        return _ops().transpose(self, dim0, dim1)

    @property
    def T(self):
        return _ops().permute(self, *reversed(range(self.ndim)))

    def sum(self, dim=None, keepdim=False):
        return _ops().sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return _ops().mean(self, dim, keepdim)

    def var(self, dim=None, keepdim=False, unbiased=True):
        return _ops().var(self, dim, keepdim, unbiased)

    def max(self, dim=None, keepdim=False):
        return _ops().max(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return Tensor(_ops().argmax_array(self.data, dim, keepdim))

    def softmax(self, dim):
        return _ops().softmax(self, dim)

    def log_softmax(self, dim):
        return _ops().log_softmax(self, dim)


def _ops():
    from . import ops
    return ops


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
    xp = _xp(device)
    return Tensor(xp.zeros(_shape(size), dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    xp = _xp(device)
    return Tensor(xp.ones(_shape(size), dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    xp = _xp(device)
    return Tensor(xp.full(tuple(size), fill_value, dtype=dtype or _DEFAULT_FLOAT),
                  requires_grad=requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples from the generator seeded by ``manual_seed``."""
    xp = _xp(device)
    data = backend.generator(xp).standard_normal(_shape(size), dtype=_float(dtype))
    return Tensor(data, requires_grad=requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    xp = _xp(device)
    data = backend.generator(xp).random(_shape(size), dtype=_float(dtype))
    return Tensor(data, requires_grad=requires_grad)


def randint(low, high, size, dtype=numpy.int64, device=None) -> Tensor:
    xp = _xp(device)
    return Tensor(backend.generator(xp).integers(low, high, size=tuple(size), dtype=dtype))


def arange(*args, dtype=None, device=None) -> Tensor:
    xp = _xp(device)
    return Tensor(xp.arange(*args, dtype=dtype))


def _float(dtype):
    dtype = numpy.dtype(dtype or _DEFAULT_FLOAT)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"random floats must be float32 or float64, got {dtype}")
    return dtype


def zeros_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    xp = backend.array_module(t.data)
    return Tensor(xp.zeros(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    xp = backend.array_module(t.data)
    return Tensor(xp.ones(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)
