"""Guards that turn a silently wrong gradient into an error naming the op.

The engine (``autograd.py``) calls them at four moments; kept here together they read
(and move) as one piece:

* **version counters**: each tensor counts the in-place changes of its array (views
  share the count). When a node is recorded, ``record_saved_versions`` notes the count of
  every tensor whose array forward saved; reading ``ctx.saved_tensors`` calls
  ``check_saved_versions``, which refuses when a count moved (``optimizer.step()``
  between forward and backward).
* **read-only views**: backward receives ``gy`` and the saved arrays as read-only NumPy
  views (``read_only``), so a backward that writes into them fails at once;
  ``call_backward`` names the op. CuPy arrays have no read-only flag: on the GPU the
  version counters and the CPU test suite are the protection.
* **no silent in-place graph edits**: ``check_in_place`` refuses an in-place tensor
  method on a tensor that requires grad while grad mode is on (the engine records no
  in-place ops).
* **release**: after backward a node keeps of each input only an ``Edge`` (where the
  gradient went), not the tensor and its array (the activations).

Nothing here imports the Tensor class: the guards read ``.data``, ``.grad_fn`` and
``._version_counter`` of whatever they are given.
"""

from __future__ import annotations

import numpy

from . import backend


class VersionCounter:
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
        if t is not None and (out.data is t.data or backend.may_share_memory(out.data, t.data)):
            out._version_counter = t._version_counter
            return


def record_saved_versions(ctx, tensors, out) -> None:
    """Note, for every saved array that is (a view of) an input's or the output's
    array, that tensor's counter and its value now."""
    records = []
    candidates = [t for t in (*tensors, out) if t is not None]
    for i, array in enumerate(ctx._saved):
        if not hasattr(array, "shape"):
            continue
        for t in candidates:
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


def check_in_place(op: str, tensor, other) -> None:
    """Refuse an in-place method (``add_``, ``-=``, ``x[i] = v``) that would change a
    tensor the graph depends on: called by the Tensor while grad mode is on."""
    if tensor.requires_grad and tensor.grad_fn is None:
        raise RuntimeError(
            f"{op}: a leaf Variable that requires grad is being used in an in-place "
            "operation. Update it inside `with mr.no_grad():` (as an optimizer does), "
            "or compute a new tensor (w = w - ...)."
        )
    if tensor.requires_grad or getattr(other, "requires_grad", False):
        raise RuntimeError(
            f"{op}: minires does not record in-place operations in the graph, and "
            f"this one involves a tensor that requires grad (shape {tensor.shape}); "
            "compute a new tensor instead (y = y + x), or wrap the update in "
            "`with mr.no_grad():` if no gradient should flow through it."
        )


class Edge:
    """What a released node keeps of an input tensor: where its gradient went, not its
    data (so walking ``grad_fn.inputs`` after backward still shows the graph)."""

    __slots__ = ("grad_fn", "requires_grad", "shape", "dtype")

    def __init__(self, tensor):
        self.grad_fn, self.requires_grad = tensor.grad_fn, tensor.requires_grad
        self.shape, self.dtype = tensor.shape, tensor.dtype

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def __repr__(self) -> str:
        source = self.grad_fn if self.grad_fn is not None else "a leaf"
        return f"<edge from {source}, shape {self.shape}, data freed>"
