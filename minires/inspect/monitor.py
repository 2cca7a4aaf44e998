"""``GradientMonitor``: watch the gradients flow through a model while it trains.

    monitor = GradientMonitor(model, optimizer, steps=range(0, 500, 25))
    with monitor:                      # hooks exist only inside the with block
        fit(model, optimizer, ...)     # any loop that calls optimizer.step()
    monitor.history['act_grad_norm']   # (recorded steps, layers) NumPy array
    print(monitor.history[-1].table())
    monitor.history.save('flow.json')

How it measures, with the hooks ``minires.nn`` provides:

* a forward hook on each layer records the mean and standard deviation of its output
  and puts a ``Tensor.register_hook`` on that output, which receives d loss / d output
  during backward: the activation gradient;
* a forward hook on every ``nn.ReLU`` inside a layer counts its dead units;
* around ``optimizer.step()`` (the monitor wraps the method of this one optimizer
  instance while it is active) it reads every parameter's ``.grad``, copies the
  weights, lets the optimizer step and measures how far they moved. Without an
  optimizer, call ``monitor.step()`` after ``backward()`` yourself; update ratios are
  then NaN.

"Costs nothing when off": outside ``start()``/``stop()`` (or the ``with`` block) no hook
is attached and ``optimizer.step`` is the optimizer's own. While active, the hooks are
attached only for the steps in ``steps``; between them only the counter in the wrapped
``optimizer.step`` runs. Forward passes under ``no_grad`` (evaluation) are ignored.

If a layer runs several times in one step (gradient accumulation), its output
statistics are averaged over the calls, its gradient norms combined as the norm of
all the gradients together.
"""

from __future__ import annotations

import math

from .. import backend, nn
from ..autograd import is_grad_enabled
from .layers import resolve_layers
from .profile import History, Profile


def _norm(array):
    """L2 norm of an array, left on its device (a 0-d array): reading it back to the
    host is one sync per step, not one per layer."""
    xp = backend.array_module(array)
    return xp.linalg.norm(array.ravel())


def _host(value) -> float:
    return float(backend.to_numpy(value))


class _LayerRecord:
    """What one layer accumulates during one step, as device scalars."""

    def __init__(self):
        self.means, self.stds, self.grad_norms = [], [], []
        self.dead_units, self.relu_units = [], 0

    def add_output(self, y) -> None:
        self.means.append(y.mean())
        self.stds.append(y.std())

    def add_grad(self, g) -> None:
        self.grad_norms.append(_norm(g))

    def add_relu(self, y) -> None:
        alive = (y > 0).reshape(y.shape[0], -1).any(axis=0)  # (units,)
        self.dead_units.append(alive.size - alive.sum())
        self.relu_units += int(alive.size)

    def summary(self) -> dict:
        def mean(values):
            return sum(_host(v) for v in values) / len(values) if values else None

        grad = (math.sqrt(sum(_host(g) ** 2 for g in self.grad_norms))
                if self.grad_norms else None)
        dead = (sum(_host(d) for d in self.dead_units) / self.relu_units
                if self.relu_units else None)
        return {"act_mean": mean(self.means), "act_std": mean(self.stds),
                "act_grad_norm": grad, "dead_relu": dead}


class GradientMonitor:
    """Record per-layer gradient flow for chosen steps of a training run.

    ``model``: any Module. ``optimizer``: the optimizer that trains it (optional; with
    it, steps are counted and update ratios measured automatically). ``layers``: None
    (residual/MLP blocks if the model has any, else every Conv2d and Linear),
    'blocks', 'weights' or a list of module names. ``steps``: the step numbers (0 =
    the first ``optimizer.step()`` after ``start()``) to record, e.g.
    ``range(0, 1000, 50)``; None records every step.
    """

    def __init__(self, model, optimizer=None, *, layers=None, steps=None):
        self.model, self.optimizer = model, optimizer
        self.layer_names = resolve_layers(model, layers)
        modules = dict(model.named_modules())
        self._layers = [modules[name] for name in self.layer_names]
        # every ReLU module inside each layer (a layer may itself be one)
        self._relus = []  # (relu module, layer index)
        for i, layer in enumerate(self._layers):
            for sub in layer.modules():
                if isinstance(sub, nn.ReLU):
                    self._relus.append((sub, i))
        self._params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._layer_params = [
            [k for k, (n, _) in enumerate(self._params)
             if name == "" or n.startswith(name + ".")]
            for name in self.layer_names]
        self.steps = steps
        self.history = History()
        self.step_count = 0  # optimizer steps seen since start()
        self._handles = []
        self._records = None  # one _LayerRecord per layer while hooks are attached
        self._active = False
        self._wrapped_step = None

    # ----------------------------------------------------------------- switching
    def start(self) -> GradientMonitor:
        """Attach the hooks (and count the optimizer's steps) from now on; returns self.
        ``with monitor:`` starts and stops it."""
        if self._active:
            return self
        self._active = True
        if self.optimizer is not None:
            original = self.optimizer.step  # the bound method of the class

            def step(*args, **kwargs):
                return self._optimizer_step(original, *args, **kwargs)

            self.optimizer.step = step  # an instance attribute shadows the class method
            self._wrapped_step = step
        self._arm()
        return self

    def stop(self) -> None:
        """Remove every hook and restore the optimizer's ``step``: the model runs as before."""
        self._disarm()
        if self._wrapped_step is not None and self.optimizer.__dict__.get("step") is \
                self._wrapped_step:
            del self.optimizer.step  # the class's step is visible again
        self._wrapped_step = None
        self._active = False

    def __enter__(self) -> GradientMonitor:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def active(self) -> bool:
        """Whether the monitor is started (between ``start()`` and ``stop()``)."""
        return self._active

    def recording(self) -> bool:
        """True when the current step will be recorded."""
        return self._active and (self.steps is None or self.step_count in self.steps)

    # ----------------------------------------------------------------- hooks
    def _arm(self) -> None:
        """Attach the hooks if the coming step is to be recorded."""
        if not self.recording() or self._handles:
            return
        self._records = [_LayerRecord() for _ in self._layers]
        for i, layer in enumerate(self._layers):
            self._handles.append(layer.register_forward_hook(self._output_hook(i)))
        for relu, i in self._relus:
            self._handles.append(relu.register_forward_hook(self._relu_hook(i)))

    def _disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _output_hook(self, i: int):
        def hook(module, args, output):
            if not is_grad_enabled() or not hasattr(output, "data"):
                return None  # evaluation, or an output that is not a Tensor
            record = self._records[i]
            record.add_output(output.data)
            if output.requires_grad:
                output.register_hook(lambda grad: record.add_grad(grad.data))
            return None

        return hook

    def _relu_hook(self, i: int):
        def hook(module, args, output):
            if is_grad_enabled():
                self._records[i].add_relu(output.data)
            return None

        return hook

    # ----------------------------------------------------------------- steps
    def step(self) -> Profile | None:
        """Close the current step (call it after ``backward()``) when no optimizer is
        watched; returns its Profile if it was recorded."""
        if self._wrapped_step is not None:
            raise RuntimeError("GradientMonitor.step(): this monitor watches an optimizer, "
                               "whose step() closes each step; do not call both")
        profile = None
        if self.recording():
            profile = self._profile(self._grad_norms(), None)
        self._advance()
        return profile

    def _optimizer_step(self, original, *args, **kwargs):
        if not self.recording():
            result = original(*args, **kwargs)
            self._advance()
            return result
        grads = self._grad_norms()
        before = [p.data.copy() for _, p in self._params]
        result = original(*args, **kwargs)
        moved = [(_host(_norm(p.data - b)), _host(_norm(b)))
                 for (_, p), b in zip(self._params, before)]
        self._profile(grads, moved)
        self._advance()
        return result

    def _advance(self) -> None:
        self._disarm()
        self.step_count += 1
        self._arm()

    def _grad_norms(self) -> list:
        return [None if p.grad is None else _host(_norm(p.grad.data)) for _, p in self._params]

    def _profile(self, grads: list, moved: list | None) -> Profile:
        weights = [_host(_norm(p.data)) for _, p in self._params] if moved is None else \
            [w for _, w in moved]
        stats = {k: [] for k in ("act_grad_norm", "act_mean", "act_std", "dead_relu",
                                 "weight_grad_norm", "update_ratio")}
        for record, members in zip(self._records, self._layer_params):
            for key, value in record.summary().items():
                stats[key].append(value)
            g = [grads[k] for k in members if grads[k] is not None]
            stats["weight_grad_norm"].append(math.sqrt(sum(x * x for x in g)) if g else None)
            if moved is None or not members:
                stats["update_ratio"].append(None)
            else:
                delta = math.sqrt(sum(moved[k][0] ** 2 for k in members))
                size = math.sqrt(sum(moved[k][1] ** 2 for k in members))
                stats["update_ratio"].append(delta / size if size else None)
        param_stats = {
            "grad_norm": grads,
            "weight_norm": weights,
            "update_ratio": [None] * len(grads) if moved is None else
            [d / w if w else None for d, w in moved],
        }
        profile = Profile(self.layer_names, stats, [n for n, _ in self._params], param_stats,
                          step=self.step_count)
        self.history.append(profile)
        return profile
