"""Module hooks: the handle every ``register_*_hook`` returns, and the full backward
hook built on the engine's tensor hooks.

``register_forward_pre_hook``, ``register_forward_hook`` and
``register_full_backward_hook`` have PyTorch's names and signatures and return a
handle with ``.remove()``.

The backward hook needs the gradients with respect to the module's inputs and
outputs at one moment. minires gets them without any support from the engine: when a
module has backward hooks, ``__call__`` passes every tensor input through an identity
node (a reshape to the same shape, which has its own graph node and costs no copy) and
does the same with every tensor output. ``Tensor.register_hook`` on the output
identities records ``grad_output``; a hook on the input identities sees
``grad_input``, calls the user's hooks, and can replace the gradient before it flows
on to the layers below. If no input needs a gradient (the image fed to the first
layer), the user's hooks are called as soon as ``grad_output`` is known, with
``grad_input = (None, ...)``, as in PyTorch.

Limits, because the engine's nodes have exactly one output: when a module has several
tensor inputs, the hook runs when the last of their gradients arrives; by then the
others have already flowed on, so a hook may replace only that last one (a replacement
of any other raises an error). An input (or output) whose gradient never arrives,
because the module ignores it, means the hook is not called for that backward.
"""

from __future__ import annotations

from ..ops import reshape
from ..tensors import Tensor


class RemovableHandle:
    """Returned by every ``register_*_hook``; ``remove()`` unregisters the hook."""

    _next_id = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        """Unregister the hook (again is harmless)."""
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


def _identity(t: Tensor) -> Tensor:
    """A new graph node with the same values: a hook on it sees exactly t's gradient."""
    return reshape(t, *t.shape)


def _wrap(values: tuple, make_hook, positions: list) -> tuple:
    """``values`` with every tensor that requires grad passed through an identity op
    whose gradient hook is ``make_hook(position)``; the positions are appended to
    ``positions``."""
    wrapped = list(values)
    for i, value in enumerate(values):
        if isinstance(value, Tensor) and value.requires_grad:
            wrapped[i] = _identity(value)
            wrapped[i].register_hook(make_hook(i))
            positions.append(i)
    return tuple(wrapped)


class BackwardHook:
    """The state of one forward call of a module with full backward hooks."""

    def __init__(self, module, hooks: list):  # module: the nn.Module called
        self.module, self.hooks = module, hooks
        self.n_args = 0
        self.input_positions = []  # which positional args were wrapped
        self.grad_inputs = {}  # position -> gradient array, filled during backward
        self.n_outputs = 0
        self.output_positions = []
        self.grad_outputs = {}

    def wrap_inputs(self, args: tuple) -> tuple:
        self.n_args = len(args)
        return _wrap(args, self._input_hook, self.input_positions)

    def wrap_outputs(self, output):
        single = isinstance(output, Tensor)
        outputs = (output,) if single else output
        if not isinstance(outputs, tuple):  # a dict or other structure: leave untouched
            return output
        self.n_outputs = len(outputs)
        wrapped = _wrap(outputs, self._output_hook, self.output_positions)
        return wrapped[0] if single else wrapped

    def _output_hook(self, i: int):
        def hook(grad: Tensor):
            self.grad_outputs[i] = grad
            if not self.input_positions and len(self.grad_outputs) == len(self.output_positions):
                # no input needs a gradient: nothing more will arrive, call the hooks now
                self._call_hooks((None,) * self.n_args)
                self.grad_outputs = {}
            return None

        return hook

    def _input_hook(self, i: int):
        def hook(grad: Tensor):
            self.grad_inputs[i] = grad
            if len(self.grad_inputs) < len(self.input_positions):
                return None  # wait for the other inputs' gradients
            grad_input = tuple(self.grad_inputs.get(k) for k in range(self.n_args))
            result = self._call_hooks(grad_input)
            self.grad_inputs, self.grad_outputs = {}, {}
            if result is None:
                return None
            for k in range(self.n_args):
                if k != i and result[k] is not grad_input[k]:
                    raise RuntimeError(
                        f"{type(self.module).__name__}: a full backward hook replaced the "
                        f"gradient of input {k}, but with several tensor inputs minires can "
                        f"only replace the last one to arrive (input {i}); see "
                        "minires/nn/hooks.py")
            return result[i]

        return hook

    def _call_hooks(self, grad_input: tuple):
        """Run the user's hooks in order; each sees the previous one's replacement."""
        grad_output = tuple(self.grad_outputs.get(k) for k in range(self.n_outputs))
        replaced = None
        for hook in self.hooks:
            result = hook(self.module, grad_input, grad_output)
            if result is not None:
                result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
                if len(result) != len(grad_input):
                    raise RuntimeError(
                        f"{type(self.module).__name__}: a full backward hook returned "
                        f"{len(result)} gradients, expected {len(grad_input)} (one per "
                        "positional input)")
                grad_input = replaced = result
        return replaced
