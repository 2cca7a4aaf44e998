"""``Optimizer``: the base class that SGD, Adam and AdamW share.

An optimizer holds *parameter groups*: dicts with a ``'params'`` list and the settings
(``lr``, ``momentum``, ...) that apply to those parameters. ``optimizer.param_groups[0]
['lr'] = 0.01`` changes a setting; learning-rate schedulers do exactly that. Per-parameter
state (momentum buffers, Adam's moments) lives in ``optimizer.state[param]``, a dict of
plain xp arrays on the parameter's device.

Subclasses write ``step()``. They update ``param.data`` in place with array ops of the
parameter's own array module (numpy or cupy), never through Tensor ops, so an update
records no graph and costs no autograd bookkeeping.
"""

from __future__ import annotations

import inspect
import warnings

import numpy

from .. import backend
from ..autograd import enable_grad
from ..tensors import Tensor


class _RequiredParameter:
    """Marks a setting that has no default (like ``SGD``'s ``lr``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class of every optimizer.

    ``params`` is an iterable of Tensors, or of dicts (parameter groups) such as
    ``[{'params': model.fc.parameters(), 'lr': 0.1}, {'params': others}]``; a setting
    a group leaves out comes from ``defaults``.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}  # param (a Tensor, hashed by identity) -> dict of its state
        self.param_groups: list[dict] = []
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params should be an iterable of Tensors or dicts, but "
                            "got a single Tensor; wrap it in a list: [tensor]")
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: params must be an ordered collection (a list), not a "
                            "set: the order of a set changes between runs, and the order of "
                            "the parameters is what state_dict() records")
        groups = list(params)
        if not groups:
            raise ValueError(f"{name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ----------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own settings (e.g. to unfreeze layers)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got "
                            f"{type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' key")
        group = dict(param_group)  # ours: the caller's dict stays as it was
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: optimizer parameters must be an ordered collection (a "
                            "list), not a set: a set's order changes between runs")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name} can only optimize Tensors, but parameter {i} of the "
                                f"group is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name} can't optimize a non-leaf Tensor (parameter {i} of "
                                 f"the group has grad_fn={p.grad_fn!r}); optimize the leaf "
                                 "it was computed from")
        if len({id(p) for p in params}) != len(params):
            warnings.warn(f"{name}: a parameter group contains the same parameter more than "
                          "once; it will be updated more than once per step", stacklevel=3)
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required "
                                 f"optimization parameter {key}")
            group.setdefault(key, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        group["params"] = params
        self.param_groups.append(group)

    # ----------------------------------------------------------------- stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients of every parameter before the next backward.

        ``set_to_none=True`` (the default, as in PyTorch) drops them: cheaper, and a
        parameter that gets no gradient is then skipped by ``step()`` instead of being
        decayed with a zero gradient. ``False`` keeps ``.grad`` Tensors filled with zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    # A fresh zero array rather than an in-place fill: the engine may hand
                    # one gradient array to two leaves (y = a + b), or hand back the very
                    # array a user passed to backward(), and zeroing that would be a surprise.
                    xp = backend.array_module(p.grad.data)
                    p.grad.data = xp.zeros_like(p.grad.data)

    def _state_of(self, p: Tensor) -> dict:
        """``self.state[p]``, created empty on first use.

        ``model.to('cuda')`` (or ``.double()``) replaces ``p.data`` but keeps the Tensor, so
        an optimizer built before the move keeps its parameters; its state arrays follow
        them here, instead of failing later on a numpy-cupy mix.
        """
        state = self.state.setdefault(p, {})
        for key, value in state.items():
            if _is_array(value):
                if backend.device_of(value) != p.device:
                    value = state[key] = backend.to_device(value, p.device)
                if value.dtype.kind == "f" and value.dtype != p.dtype:
                    state[key] = value.astype(p.dtype)
        return state

    def step(self, closure=None):
        """Update every parameter that has a gradient. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    @staticmethod
    def _evaluate(closure):
        """Run ``closure`` (which recomputes the loss and calls backward) if one was given."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The optimizer's state in PyTorch's shape::

            {'state': {param_index: {'momentum_buffer': array, ...}, ...},
             'param_groups': [{'lr': 0.1, ..., 'params': [param_index, ...]}, ...]}

        Parameters are numbered by their position across the groups, so the dict holds
        no Tensors and loads into a new optimizer built over the same parameters.

        Unlike PyTorch, the arrays are copies: a snapshot that later steps don't change.
        """
        index_of: dict = {}  # id(param) -> its index
        groups = []
        start = 0
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            for i, p in enumerate(group["params"], start):
                index_of.setdefault(id(p), i)
            packed["params"] = [index_of[id(p)] for p in group["params"]]
            start += len(group["params"])
            groups.append(packed)
        state = {}
        for p, param_state in self.state.items():
            state[index_of[id(p)]] = {
                key: value.copy() if _is_array(value) else value
                for key, value in param_state.items()
            }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()``, e.g. one read back with ``mr.load``.

        The groups must have the same sizes as this optimizer's, and the state must come
        from the same kind of optimizer (an Adam state into SGD is refused). Their
        settings (lr, momentum...) replace the current ones; state arrays are copied
        onto each parameter's device, and floating ones cast to the parameter's dtype.
        """
        name = type(self).__name__
        op = f"{name}.load_state_dict"
        saved_groups = _check_structure(op, state_dict)
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{op}: loaded state dict has {len(saved_groups)} parameter "
                             f"groups, but the optimizer has {len(self.param_groups)}")
        param_of = {}  # saved index -> this optimizer's parameter
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{op}: loaded parameter group {i} has "
                                 f"{len(saved['params'])} parameters, but the optimizer's "
                                 f"group {i} has {len(group['params'])}")
            self._check_settings(op, i, saved)
            param_of.update(zip(saved["params"], group["params"]))

        state = {}
        for index, param_state in state_dict["state"].items():
            if index not in param_of:
                raise ValueError(f"{op}: state for parameter index {index!r}, but the groups "
                                 f"only name indices {sorted(param_of)}")
            if not isinstance(param_state, dict):
                raise ValueError(f"{op}: the state of parameter {index} is of type "
                                 f"{type(param_state).__name__}, expected a dict")
            foreign = sorted(set(param_state) - set(self._state_keys or param_state))
            if foreign:
                raise ValueError(f"{op}: the state of parameter {index} holds {foreign}, "
                                 f"which {name} does not keep (it keeps "
                                 f"{sorted(self._state_keys)}); was it saved by "
                                 f"{_optimizers_keeping(foreign)}?")
            p = param_of[index]
            state[p] = {key: _state_value_for(p, value, op, index, key)
                        for key, value in param_state.items()}

        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = dict(self._optional_settings)  # settings older state dicts lack
            new_group.update({key: value for key, value in saved.items() if key != "params"})
            new_group["params"] = group["params"]
            groups.append(new_group)
        self.state = state
        self.param_groups = groups

    # Subclasses name what their state holds and which settings a state dict saved before
    # the setting existed may lack (with its value then), so a state dict of another
    # optimizer is refused instead of failing with a KeyError in a later step().
    _state_keys: frozenset | None = None
    _optional_settings: dict = {}

    def _check_settings(self, op: str, i: int, saved: dict) -> None:
        missing = sorted(set(self.defaults) - set(saved) - set(self._optional_settings))
        if missing:
            settings = sorted(key for key in saved if key != "params")
            raise ValueError(
                f"{op}: parameter group {i} of the state dict has no {missing} setting, "
                f"which {type(self).__name__} needs; its settings {settings} are those of "
                f"{_optimizers_with(settings)}. A state dict loads only into the kind of "
                "optimizer that saved it.")

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _check_structure(op: str, state_dict) -> list:
    """``state_dict['param_groups']`` after checking the shape of the whole dict."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"{op}: expected a dict with 'state' and 'param_groups', got a "
                         f"{type(state_dict).__name__}")
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise ValueError(f"{op}: the state dict has no {key!r} key "
                             f"(keys: {sorted(map(str, state_dict))})")
    if not isinstance(state_dict["state"], dict):
        raise ValueError(f"{op}: state_dict['state'] must be a dict (parameter index -> "
                         f"state), got a {type(state_dict['state']).__name__}")
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)):
        raise ValueError(f"{op}: state_dict['param_groups'] must be a list of dicts, got a "
                         f"{type(groups).__name__}")
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("params"), (list, tuple)):
            raise ValueError(f"{op}: parameter group {i} of the state dict must be a dict "
                             "with a 'params' list of parameter indices")
    return list(groups)


def _optimizer_classes() -> list:
    found, stack = [], list(Optimizer.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(found, key=lambda cls: cls.__name__)


def _settings_of(cls) -> set:
    parameters = inspect.signature(cls.__init__).parameters
    return set(parameters) - {"self", "params"} - set(cls._optional_settings)


def _optimizers_with(settings) -> str:
    names = [cls.__name__ for cls in _optimizer_classes() if _settings_of(cls) <= set(settings)]
    return " or ".join(names) if names else "another optimizer"


def _optimizers_keeping(keys) -> str:
    names = [cls.__name__ for cls in _optimizer_classes()
             if cls._state_keys is not None and set(keys) <= cls._state_keys]
    return " or ".join(names) if names else "another optimizer"


def _is_array(value) -> bool:
    return isinstance(value, numpy.ndarray) or backend.is_cupy_array(value)


def _state_value_for(p: Tensor, value, op: str, index, key):
    """A copy of a saved state value, on ``p``'s device (floating arrays in ``p``'s dtype)."""
    if isinstance(value, Tensor):
        value = value.data
    if not _is_array(value):
        return value  # a step count or another plain value
    if value.ndim > 0 and tuple(value.shape) != p.shape:
        raise ValueError(f"{op}: state {key!r} of parameter {index} has shape "
                         f"{tuple(value.shape)}, but the parameter has shape {p.shape}")
    value = backend.to_device(value, p.device)
    dtype = p.dtype if value.dtype.kind == "f" else value.dtype
    return value.astype(dtype, copy=True)  # ours: the caller's dict keeps its arrays
