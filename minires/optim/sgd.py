"""Stochastic gradient descent, with momentum, dampening, Nesterov and weight decay.

The update, exactly PyTorch's (``g`` the gradient, ``p`` the parameter, ``b`` the
momentum buffer, ``mu`` momentum, ``tau`` dampening, ``lambda`` weight decay)::

    g = g + lambda * p                 # weight decay, as an L2 term in the gradient
    b = g                              # first step: the buffer starts as the gradient
    b = mu * b + (1 - tau) * g         # later steps (dampening only scales new gradients)
    g = g + mu * b   if nesterov       # look ahead along the momentum
    g = b            otherwise
    p = p - lr * g

Note that PyTorch's momentum is "heavy ball" with the learning rate outside the buffer
(``b`` sums gradients, not steps), unlike Sutskever et al.; changing lr mid-training
therefore rescales the whole step at once.
"""

from __future__ import annotations

from ..autograd import no_grad
from ..autograd_safety import increment_version
from .optimizer import Optimizer, required


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``."""

    _state_keys = frozenset({"momentum_buffer"})

    def __init__(self, params, lr=required, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr is not required and lr < 0.0:
            raise ValueError(f"SGD: invalid learning rate lr={lr} (must be >= 0)")
        if momentum < 0.0:
            raise ValueError(f"SGD: invalid momentum={momentum} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"SGD: invalid weight_decay={weight_decay} (must be >= 0)")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = self._evaluate(closure)
        with no_grad():
            for group in self.param_groups:
                lr, momentum = group["lr"], group["momentum"]
                dampening, weight_decay = group["dampening"], group["weight_decay"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.data
                    if weight_decay != 0:
                        g = g + weight_decay * p.data  # a new array: .grad stays untouched
                    if momentum != 0:
                        state = self._state_of(p)
                        b = state.get("momentum_buffer")
                        if b is None:
                            # a copy: g may be the .grad array, which we must not update
                            b = state["momentum_buffer"] = g.copy()
                        else:
                            b *= momentum
                            b += (1 - dampening) * g
                        g = g + momentum * b if group["nesterov"] else b
                    p.data -= lr * g
                    increment_version(p)  # a graph that saved p now refuses to backward
        return loss
