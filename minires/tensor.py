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

    ``Tensor.grad_fn`` is the Context of the op that made the tensor. The engine's own
    fields are slots; whatever an op stores as an attribute (``ctx.x_shape = x.shape``)
    lands in the instance dict, the op's namespace, which ``release`` empties in one go.
    """

    __slots__ = ("function", "xp", "inputs", "needs_input_grad", "hooks", "_saved",
                 "_versions", "_freed", "__dict__")

    def __init__(self, function, xp, inputs, needs_input_grad):
        self.function = function
        self.xp = xp
        self.inputs = inputs  # the input Tensors: the edges of the graph
        self.needs_input_grad = needs_input_grad
        self.hooks = []  # Tensor.register_hook on the output of this node
        self._saved = ()
        self._versions = ()  # (index in _saved, version counter, its value when saved)
        self._freed = False

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self) -> tuple:
        """The saved arrays, as read-only views; raises if one was changed in place."""
        self.check_not_freed()
        check_saved_versions(self)
        return tuple(read_only(a) for a in self._saved)

    def check_not_freed(self) -> None:
        if self._freed:
            raise RuntimeError(
                f"{self.function.__name__}.backward: trying to backward through the graph a "
                "second time; its saved arrays were freed after the first backward. "
                "Pass retain_graph=True to the first backward() to keep them."
            )

    def release(self) -> None:
        """Free what forward saved once backward is done (unless retain_graph): the
        saved arrays, the op's attributes, and the input tensors themselves, whose
        arrays are the activations. The edges stay (``_Edge``: only where the gradient
        went)."""
        self._saved = ()
        self._versions = ()
        self._freed = True
        self.hooks = []
        self.inputs = tuple(_Edge(t) for t in self.inputs)
        vars(self).clear()  # the op's namespace

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
        share_version_with_views(out, tensors)
        if record:
            out.grad_fn = ctx
            record_saved_versions(ctx, tensors, out)
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
        _accumulate_leaf(root, gradient, {id(gradient)})
        return
    grads = {id(root.grad_fn): gradient}  # node -> d loss / d (node's output)
    handed = set()  # ids of the arrays given to leaves in this pass (see _accumulate_leaf)
    for node in _topological_order(root.grad_fn):
        gy = grads.pop(id(node), None)
        if gy is not None:  # None: no gradient flowed here (only through non-grad outputs)
            _backward_node(node, gy, grads, handed)
        if not retain_graph:
            node.release()


def _backward_node(node: Context, gy, grads: dict, handed: set) -> None:
    """Run one node's backward and pass its input gradients on (to ``grads`` or leaves)."""
    for hook in node.hooks:
        result = hook(Tensor(gy))
        if result is not None:
            gy = as_tensor(result).data
    node.check_not_freed()
    gxs = call_backward(node, gy)
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
            _accumulate_leaf(tensor, gx, handed)
        else:
            key = id(tensor.grad_fn)
            # out of place: gx may be an array that another branch also holds
            grads[key] = gx if key not in grads else grads[key] + gx


def _accumulate_leaf(tensor: Tensor, g, handed: set) -> None:
    for hook in tensor._hooks:
        result = hook(Tensor(g))
        if result is not None:
            g = as_tensor(result).data
    if g.dtype != tensor.dtype:
        g = g.astype(tensor.dtype)
    if tensor.grad is None:
        if id(g) in handed or not owns_writable_memory(g):
            # a view of gy or of a saved array, or one array handed to two leaves
            # (y = a + b): copied, so leaf.grad.zero_() touches one gradient only
            g = g.copy()
        handed.add(id(g))
        tensor.grad = Tensor(g)
    else:  # gradients of leaves add up across backward calls, as in PyTorch
        tensor.grad = Tensor(tensor.grad.data + g)


# --------------------------------------------------------------------------- autograd safety
# Guards that turn a silently wrong gradient into an error naming the op, kept together
# so they read (and move) as one piece:
#
# * version counters: each tensor counts the in-place changes of its array (views share
#   the count); forward notes the count of every tensor whose array it saved, and
#   backward refuses to run when a count moved (``optimizer.step()`` before backward);
# * read-only views: backward receives gy and the saved arrays as read-only NumPy views,
#   so a backward that writes into them fails at once. CuPy arrays have no read-only
#   flag: on the GPU the version counters and the CPU test suite are the protection;
# * release: after backward a node drops what it saved and the input tensors (the
#   activations), keeping only the edges.


class _VersionCounter:
    """How many times an array (shared by a tensor and its views) changed in place."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


def increment_version(tensor) -> None:
    """Record that ``tensor``'s array was changed in place behind autograd's back (an
    optimizer writing ``p.data``), so a graph that saved the old values refuses to
    backward. Tensor methods such as ``add_`` and ``-=`` call it themselves."""
    tensor._version_counter.value += 1


def share_version_with_views(out, tensors) -> None:
    """An op's output that is a view of an input's array (reshape, permute, slicing)
    shares that input's counter: changing either changes both."""
    for t in tensors:
        if out.data is t.data or backend.may_share_memory(out.data, t.data):
            out._version_counter = t._version_counter
            return


def record_saved_versions(ctx, tensors, out) -> None:
    """Note, for every saved array that is (a view of) an input's or the output's
    array, that tensor's counter and its value now."""
    records = []
    for i, array in enumerate(ctx._saved):
        if not hasattr(array, "shape"):
            continue
        for t in (*tensors, out):
            # may_share_memory compares address ranges only: cheap, and exact for arrays
            # from different allocations
            if array is t.data or backend.may_share_memory(array, t.data):
                records.append((i, t._version_counter, t._version_counter.value))
                break
    ctx._versions = tuple(records)


def check_saved_versions(ctx) -> None:
    for i, counter, expected in ctx._versions:
        if counter.value != expected:
            array = ctx._saved[i]
            raise RuntimeError(
                f"{ctx.function.__name__}.backward: one of the arrays needed for gradient "
                f"computation has been modified by an in-place operation: the "
                f"{array.dtype} array of shape {tuple(array.shape)} saved by {ctx.name()} "
                f"is at version {counter.value}; expected version {expected} instead. "
                "Was optimizer.step() (or another in-place update such as -= or add_) "
                "called between the forward pass and backward()? Call backward() first."
            )


def read_only(array):
    """A read-only view of a NumPy array (a CuPy array has no such flag: returned as is)."""
    if isinstance(array, numpy.ndarray):
        view = array.view()
        view.flags.writeable = False
        return view
    return array


def owns_writable_memory(array) -> bool:
    """False for views (``array.base`` set) and read-only arrays."""
    if getattr(array, "base", None) is not None:
        return False
    return not isinstance(array, numpy.ndarray) or array.flags.writeable


def call_backward(node, gy):
    """``node``'s backward on a read-only ``gy``; a write into gy or a saved array is
    reported as the mistake of that backward, not as NumPy's bare ValueError."""
    try:
        return node.function.backward(node, read_only(gy))
    except ValueError as error:
        if "read-only" not in str(error):
            raise
        raise RuntimeError(
            f"{node.function.__name__}.backward modified gy or an array saved by forward in "
            f"place ({error}). Compute new arrays instead (gx = gy * mask, not "
            "gy *= mask): the engine may hand the same gy to several ops, and a second "
            "backward(retain_graph=True) reads the saved arrays again."
        ) from error


class _Edge:
    """What a released node keeps of an input tensor: where its gradient went, not its
    data (so walking ``grad_fn.inputs`` after backward still shows the graph)."""

    __slots__ = ("grad_fn", "requires_grad", "shape", "dtype")

    def __init__(self, tensor):
        self.grad_fn, self.requires_grad = tensor.grad_fn, tensor.requires_grad
        self.shape, self.dtype = tensor.shape, tensor.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        """How many in-place changes the array has seen (PyTorch's ``tensor._version``)."""
        return self._version_counter.value

    def __repr__(self) -> str:
        source = self.grad_fn if self.grad_fn is not None else "a leaf"
        return f"<edge from {source}, shape {self.shape}, data freed>"


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
        self._version_counter = _VersionCounter()

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

    @property
    def _version(self) -> int:
        """How many in-place changes the array has seen (PyTorch's ``tensor._version``)."""
        return self._version_counter.value

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
        """The same data, cut from the graph (shares memory and the version counter, as
        in PyTorch: an in-place change of the detached tensor is seen by the graph)."""
        out = Tensor(self.data)
        out._version_counter = self._version_counter
        return out

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
        return self.__iadd__(other if alpha == 1 else _scaled(other, alpha))

    def sub_(self, other, *, alpha=1):
        return self.__isub__(other if alpha == 1 else _scaled(other, alpha))

    def mul_(self, other):
        return self.__imul__(other)

    def div_(self, other):
        return self.__itruediv__(other)

    def zero_(self):
        return self._inplace("zero_", lambda a, _: a.fill(0), 0)

    def fill_(self, value):
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
        if _grad_enabled:
            if self.requires_grad and self.grad_fn is None:
                raise RuntimeError(
                    f"{op}: a leaf Variable that requires grad is being used in an in-place "
                    "operation. Update it inside `with mr.no_grad():` (as an optimizer does), "
                    "or compute a new tensor (w = w - ...)."
                )
            if self.requires_grad or (isinstance(other, Tensor) and other.requires_grad):
                raise RuntimeError(
                    f"{op}: minires does not record in-place operations in the graph, and "
                    f"this one involves a tensor that requires grad (shape {self.shape}); "
                    "compute a new tensor instead (y = y + x), or wrap the update in "
                    "`with mr.no_grad():` if no gradient should flow through it."
                )
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

    def amax(self, dim=(), keepdim=False):
        return _ops().amax(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return Tensor(_ops().argmax_array(self.data, dim, keepdim))

    def softmax(self, dim):
        return _ops().softmax(self, dim)

    def log_softmax(self, dim):
        return _ops().log_softmax(self, dim)


def _ops():
    from . import ops
    return ops


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
