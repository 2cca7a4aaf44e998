"""Learning-rate schedules: each writes ``group['lr']`` of an optimizer's parameter groups.

Use them as in PyTorch: build the scheduler after the optimizer (it sets the lr of
step 0 at once), and call ``scheduler.step()`` after ``optimizer.step()``, once per
epoch or once per batch depending on the schedule::

    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(90):
        train_one_epoch(model, optimizer)      # optimizer.step() inside
        scheduler.step()

Each scheduler computes the lr of step ``last_epoch`` from a *closed form*
``f(base_lr, last_epoch)``. PyTorch's ``step()`` instead updates the current lr from
the previous one (its "chainable" form); the two give the same sequence up to float
rounding, but the closed form does not see lr changes made by hand or by a second
scheduler stepping the same optimizer at the same time (use ``SequentialLR`` to chain
schedules one after the other).
"""

from __future__ import annotations

import math
from bisect import bisect_right

from .optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define ``get_lr()``, the lrs at ``self.last_epoch``.

    ``last_epoch`` counts ``step()`` calls (it is 0 right after construction: "epoch"
    is PyTorch's name, but schedules stepped per batch count batches). ``base_lrs`` are
    the groups' lrs when the first scheduler was attached (kept in ``group['initial_lr']``).
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an "
                            "Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: param 'initial_lr' is not "
                                   f"specified in param_groups[{i}] when resuming with "
                                   f"last_epoch={last_epoch}; load the optimizer's "
                                   "state_dict first, or leave last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()  # the lr of step 0 (or of last_epoch + 1 when resuming)

    def get_lr(self) -> list[float]:
        """The lr of every parameter group at step ``self.last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr()")

    def step(self) -> None:
        """Advance one step and write the new lrs into the optimizer."""
        self.last_epoch += 1
        self._set_lrs(self.get_lr())

    def _set_lrs(self, lrs) -> None:
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The lrs the last ``step()`` set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer: plain values that ``mr.save`` can store."""
        return {key: _copy(value) for key, value in self.__dict__.items()
                if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update({key: _copy(value) for key, value in state_dict.items()})

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(last_epoch={self.last_epoch}, "
                f"last_lr={self.get_last_lr()})")


def _copy(value):
    """Copy nested lists and dicts so a state_dict does not alias the scheduler."""
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def _check_positive_int(op: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{op}: expected a positive integer {name}, but got {value!r}")


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` steps::

        lr = base_lr * gamma ** (last_epoch // step_size)
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1):
        _check_positive_int("StepLR", "step_size", step_size)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each milestone (a milestone listed twice counts twice)::

        lr = base_lr * gamma ** (number of milestones <= last_epoch)
    """

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1,
                 last_epoch: int = -1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        passed = bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma ** passed for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Half a cosine from ``base_lr`` down to ``eta_min`` over ``T_max`` steps::

        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * last_epoch / T_max)) / 2

    Past ``T_max`` the cosine climbs back up, as PyTorch's does (no warm restart).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1):
        _check_positive_int("CosineAnnealingLR", "T_max", T_max)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the lr linearly from ``start_factor`` to ``end_factor`` over ``total_iters``
    steps, then hold it (a common warm-up)::

        lr = base_lr * (start + (end - start) * min(last_epoch, total_iters) / total_iters)
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1):
        if not 0 < start_factor <= 1:
            raise ValueError("LinearLR: starting multiplicative factor expected to be greater "
                             f"than 0 and less or equal to 1, got start_factor={start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError("LinearLR: ending multiplicative factor expected to be between 0 "
                             f"and 1, got end_factor={end_factor}")
        _check_positive_int("LinearLR", "total_iters", total_iters)
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        progress = min(self.last_epoch, self.total_iters) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin): warm up to ``max_lr``, then anneal far below
    the start, stepped once per *batch* for ``total_steps`` (= epochs * steps_per_epoch).

    Two phases (PyTorch's default), with ``initial = max_lr / div_factor`` and
    ``min = initial / final_div_factor``::

        steps 0 .. pct_start*total - 1:      initial -> max_lr
        .. total - 1:                        max_lr  -> min

    ``three_phase=True`` goes back down to ``initial`` symmetrically before annealing to
    ``min``. Each phase interpolates with half a cosine (``anneal_strategy='cos'``) or a
    line (``'linear'``). With ``cycle_momentum=True`` (the default, as in PyTorch) the
    momentum (SGD's ``momentum``, or Adam's ``beta1``) moves the opposite way, between
    ``max_momentum`` and ``base_momentum``; note that this turns momentum on even for an
    SGD built with ``momentum=0``, exactly as PyTorch does.
    """

    def __init__(self, optimizer: Optimizer, max_lr, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1):
        op = "OneCycleLR"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{op}: {type(optimizer).__name__} is not an Optimizer")
        if total_steps is not None:
            _check_positive_int(op, "total_steps", total_steps)
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            _check_positive_int(op, "epochs", epochs)
            _check_positive_int(op, "steps_per_epoch", steps_per_epoch)
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(f"{op}: you must define either total_steps OR (epochs AND "
                             f"steps_per_epoch), got total_steps={total_steps}, "
                             f"epochs={epochs}, steps_per_epoch={steps_per_epoch}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{op}: expected pct_start between 0 and 1, got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{op}: anneal_strategy must be one of 'cos' or 'linear', "
                             f"instead got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy

        # Phase boundaries are float step numbers, as in PyTorch: with pct_start=0.3 and
        # 10 steps the peak is at step 2, not at a rounded step.
        end_up = float(pct_start * self.total_steps) - 1
        if three_phase:
            self._schedule_phases = [
                _phase(end_up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(float(2 * pct_start * self.total_steps) - 2, "max_lr", "initial_lr",
                       "base_momentum", "max_momentum"),
                _phase(self.total_steps - 1, "initial_lr", "min_lr", "max_momentum",
                       "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                _phase(end_up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(self.total_steps - 1, "max_lr", "min_lr", "base_momentum",
                       "max_momentum"),
            ]

        groups = optimizer.param_groups
        max_lrs = _per_group(op, "max_lr", max_lr, groups)
        if last_epoch == -1:
            for group, group_max_lr in zip(groups, max_lrs):
                group["initial_lr"] = group_max_lr / div_factor
                group["max_lr"] = group_max_lr
                group["min_lr"] = group["initial_lr"] / final_div_factor

        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{op}: optimizer must support momentum or beta1 with "
                                 "`cycle_momentum` option enabled")
            self.use_beta1 = "betas" in optimizer.defaults
            max_momentums = _per_group(op, "max_momentum", max_momentum, groups)
            base_momentums = _per_group(op, "base_momentum", base_momentum, groups)
            if last_epoch == -1:
                for group, m_max, m_base in zip(groups, max_momentums, base_momentums):
                    self._set_momentum(group, m_max)
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict, momentum: float) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":  # half a cosine from start (pct=0) to end (pct=1)
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {step} times. The specified number "
                             f"of total steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]],
                                            pct))
                    if self.cycle_momentum:  # a side effect, as in PyTorch
                        momentum = self._anneal(group[phase["start_momentum"]],
                                                group[phase["end_momentum"]], pct)
                        self._set_momentum(group, momentum)
                    break
                start_step = end_step
        return lrs


def _phase(end_step, start_lr, end_lr, start_momentum, end_momentum) -> dict:
    return dict(end_step=end_step, start_lr=start_lr, end_lr=end_lr,
                start_momentum=start_momentum, end_momentum=end_momentum)


def _per_group(op: str, name: str, value, groups) -> list:
    """One value for every group: a scalar is repeated, a list must match the groups."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(groups):
            raise ValueError(f"{op}: expected {len(groups)} values for {name}, got "
                             f"{len(value)}")
        return list(value)
    return [value] * len(groups)


class SequentialLR(LRScheduler):
    """Run ``schedulers`` one after another, switching at ``milestones`` (steps)::

        warmup = LinearLR(optimizer, start_factor=0.1, total_iters=5)
        cosine = CosineAnnealingLR(optimizer, T_max=95)
        scheduler = SequentialLR(optimizer, [warmup, cosine], milestones=[5])

    At a milestone the next scheduler restarts from its own step 0 (from the base lrs,
    not from where the previous one stopped), as in PyTorch. A scheduler may be listed
    more than once; it restarts at each of its milestones.
    """

    def __init__(self, optimizer: Optimizer, schedulers, milestones, last_epoch: int = -1):
        op = "SequentialLR"
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers:
            raise ValueError(f"{op} expects at least one scheduler, but got no scheduler")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"{op}: the scheduler at index {i} is a "
                                f"{type(scheduler).__name__}, not an LRScheduler")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"{op} expects all schedulers to belong to the same "
                                 f"optimizer, but the scheduler {type(scheduler).__name__} at "
                                 f"index {i} has a different one")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(f"{op} expects number of schedulers provided to be one more than "
                             f"the number of milestone points, but got number of schedulers "
                             f"{len(schedulers)} and the number of milestones "
                             f"{len(milestones)}")
        if milestones != sorted(milestones):
            raise ValueError(f"{op}: milestones must be increasing, got {milestones}")
        self._schedulers = schedulers
        self._milestones = milestones
        self.optimizer = optimizer
        self.last_epoch = last_epoch + 1
        # Building each scheduler already stepped it and wrote its lr: undo that, then
        # let only the scheduler that owns step 0 take its first step.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in {id(s): s for s in schedulers}.values():  # once each, even if repeated
            scheduler.last_epoch -= 1
        first = schedulers[bisect_right(milestones, 0)]
        first.step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler.last_epoch = -1  # restart it: this step() takes it to its step 0
        scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict:
        state = {key: _copy(value) for key, value in self.__dict__.items()
                 if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)  # pop from a copy: the caller's dict stays whole
        schedulers = state.pop("_schedulers")
        self.__dict__.update({key: _copy(value) for key, value in state.items()})
        for scheduler, saved in zip(self._schedulers, schedulers, strict=True):
            scheduler.load_state_dict(saved)
