"""The autograd engine: grad mode, ``Function`` and its ``Context``, the backward walk.

Calling an op runs a ``Function``: its ``forward`` computes on plain arrays and stores
what its ``backward`` will need in a ``Context``. When grad mode is on and an input
requires a gradient, that context becomes the output's ``grad_fn``: a node of the graph
pointing back to the inputs. ``loss.backward()`` walks the nodes in reverse
topological order, handing each ``backward`` the gradient of the loss with respect to
that node's output, and adds the gradients of the leaves into their ``.grad``.

The guards that keep this walk from computing a silently wrong gradient (version
counters, read-only views, the release of the graph) are in ``autograd_safety.py``.
"""

from __future__ import annotations

import contextlib
import inspect

from . import backend
from .autograd_safety import (
    Edge,
    call_backward,
    check_saved_versions,
    increment_version,
    owns_writable_memory,
    read_only,
    record_saved_versions,
    share_version_with_views,
)
from .tensors import Tensor, as_tensor

# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether ops record a graph now: False inside ``no_grad()``."""
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
    """Context manager (and decorator): record the graph again inside a
    ``no_grad()`` block, as ``torch.enable_grad``."""
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
        self.inputs = inputs  # the input Tensors (None where left out): the graph's edges
        self.needs_input_grad = needs_input_grad
        self.hooks = []  # Tensor.register_hook on the output of this node
        self._saved = ()
        self._versions = ()  # (index in _saved, version counter, its value when saved)
        self._freed = False

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    def mark_dirty(self, *arrays) -> None:
        """Declare, before changing them, that forward updates these input arrays in
        place (BatchNorm's running statistics), as PyTorch's ``ctx.mark_dirty``. Only an
        input that needs no gradient may be updated; its version counter moves, so a
        graph that saved its old values refuses to backward."""
        for array in arrays:
            tensor = next((t for t in self.inputs if t is not None and t.data is array), None)
            if tensor is None:
                raise RuntimeError(f"{self.function.__name__}.forward: mark_dirty() was given "
                                   "an array that is not one of its inputs")
            if tensor.requires_grad:
                raise RuntimeError(
                    f"{self.function.__name__}.forward updates an input of shape "
                    f"{tensor.shape} in place, but that input requires grad; the engine "
                    "records no in-place updates (detach it, or pass a tensor that needs "
                    "no gradient)")
            increment_version(tensor)

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
        arrays are the activations. The edges stay (``Edge``: only where the gradient
        went)."""
        self._saved = ()
        self._versions = ()
        self._freed = True
        self.hooks = []
        self.inputs = tuple(None if t is None else Edge(t) for t in self.inputs)
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

    Positional arguments are the array inputs, keyword arguments are settings. An
    optional input that is left out (a convolution without bias) is passed as None:
    forward receives None, ``ctx.needs_input_grad`` is False there, and backward
    returns None for it. Every subclass is recorded in ``Function.registry`` so tests
    can enumerate all ops.
    """

    registry: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Function.registry[f"{cls.__module__}.{cls.__qualname__}"] = cls
        # forward's named inputs: passing one as a keyword would make it a setting
        parameters = list(inspect.signature(cls.forward).parameters.values())[1:]  # no ctx
        cls._input_names = frozenset(p.name for p in parameters
                                     if p.kind is p.POSITIONAL_OR_KEYWORD)

    @staticmethod
    def forward(ctx, *arrays, **attrs):
        """Compute the op's output from plain arrays (not Tensors).

        ``ctx.xp`` is the array module (numpy or cupy) to compute with; save what backward
        needs with ``ctx.save_for_backward`` or as ``ctx`` attributes. Positional arguments are
        the inputs' arrays (None for an optional input left out), keyword arguments the op's
        settings.
        """
        raise NotImplementedError("a Function subclass must define forward")

    @staticmethod
    def backward(ctx, gy):
        """The gradient of each positional input, from ``gy``, the gradient of the output.

        Returns one array (the input's shape) or ``None`` per positional input of forward;
        ``ctx.needs_input_grad`` says which are wanted. ``gy`` and what forward saved are
        read-only: compute new arrays, never change them in place.
        """
        raise NotImplementedError("a Function subclass must define backward")

    @classmethod
    def apply(cls, *inputs, **attrs) -> Tensor:
        """Run the op on tensors: ``MyOp.apply(x, w, None, stride=2)`` -> a Tensor.

        Unwraps the inputs (None stays None), checks they are on one device, calls
        ``forward`` and, when an input requires grad (and grad mode is on), records the
        node that backward will call.
        """
        if attrs and not cls._input_names.isdisjoint(attrs):
            name = sorted(cls._input_names.intersection(attrs))[0]
            raise TypeError(f"{cls.__name__}.apply: {name} is an input of forward; pass it "
                            "positionally (None when it is left out), not as a keyword")
        tensors = tuple(None if x is None else as_tensor(x) for x in inputs)
        present = [t for t in tensors if t is not None]
        check_same_device(cls.__name__, present)
        xp = backend.array_module(*(t.data for t in present))
        needs = tuple(t is not None and t.requires_grad for t in tensors)
        record = _grad_enabled and any(needs)
        ctx = Context(cls, xp, tensors, needs)
        y = cls.forward(ctx, *(None if t is None else t.data for t in tensors), **attrs)
        out = Tensor(y, requires_grad=record)
        share_version_with_views(out, present)
        if record:
            out.grad_fn = ctx
            record_saved_versions(ctx, present, out)
        return out


def check_same_device(op: str, tensors) -> None:
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op}: expected all tensors to be on the same device, but found tensors on "
            f"{' and '.join(sorted(devices))} (shapes "
            f"{[None if t is None else t.shape for t in tensors]}). "
            "Move them with .to(device) first."
        )


# --------------------------------------------------------------------------- backward


def backward(tensor: Tensor, gradient=None, retain_graph: bool = False) -> None:
    """``tensor.backward(gradient)``: d tensor / d leaf for every leaf that requires
    grad, added into ``leaf.grad``."""
    if not tensor.requires_grad:
        raise RuntimeError(
            "backward(): this tensor does not require grad and has no grad_fn "
            "(did you compute it under no_grad(), or forget requires_grad=True?)"
        )
    xp = backend.array_module(tensor.data)
    if gradient is None:
        if tensor.numel() != 1:
            raise RuntimeError(
                f"backward(): grad can be implicitly created only for scalar outputs, "
                f"but this tensor has shape {tensor.shape}; pass gradient= of that shape"
            )
        g = xp.ones_like(tensor.data)
    else:
        g = Tensor(gradient, dtype=tensor.dtype).data
        if backend.device_of(g) != tensor.device:
            raise RuntimeError(f"backward(): gradient is on {backend.device_of(g)} but "
                               f"the tensor is on {tensor.device}")
        if tuple(g.shape) != tensor.shape:
            raise RuntimeError(f"backward(): gradient has shape {tuple(g.shape)} but the "
                               f"tensor has shape {tensor.shape}")
    run_backward(tensor, g, retain_graph)


def _topological_order(root: Context) -> list:
    """Nodes reachable from ``root``, each after every node that consumes its output.

    Iterative depth-first search: a recursive one overflows Python's stack on deep graphs.
    """
    order, visited = [], {id(root)}
    stack = [(root, iter(root.inputs))]
    while stack:
        node, parents = stack[-1]
        for tensor in parents:
            parent = None if tensor is None else tensor.grad_fn
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
    for i, (tensor, gx) in enumerate(zip(node.inputs, gxs)):
        if tensor is None and gx is not None:
            raise RuntimeError(
                f"{node.function.__name__}.backward returned a gradient for input {i}, "
                "which was left out (None): return None there"
            )
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
