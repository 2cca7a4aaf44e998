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
scheduler stepping the same optimizer at the same time. To combine schedules use
``SequentialLR`` (one after the other) or ``ChainedScheduler`` (all at once: it applies
each schedule's change to the lr the previous ones left, PyTorch's chainable rule).
``ReduceLROnPlateau`` has no schedule: it lowers the lr when a metric stops improving.
"""

from __future__ import annotations

import math
import types
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
        """The lr of every parameter group at step ``self.last_epoch``: for the schedules
        that define ``_factor``, ``floor + (base_lr - floor) * _factor(last_epoch)``."""
        factor, floor = self._factor(self.last_epoch), self._chain_floor()
        return [floor + (base_lr - floor) * factor for base_lr in self.base_lrs]

    def _factor(self, step: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr() or "
                                  "_factor()")

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

    # How ChainedScheduler combines this schedule with others. A schedule written as
    # lr = floor + (base_lr - floor) * _factor(step) is chainable: inside a chain its
    # step scales the lr it finds (above its floor) by its own factor's change, as
    # PyTorch's chainable form does (``_chain_lr``). The others (LambdaLR, OneCycleLR,
    # CosineAnnealingWarmRestarts) write their own value, as in PyTorch.
    @property
    def _chainable(self) -> bool:
        return type(self)._factor is not LRScheduler._factor

    def _chain_floor(self) -> float:
        return 0.0

    def state_dict(self) -> dict:
        """Every attribute but the optimizer: plain values that ``mr.save`` can store."""
        return {key: _copy(value) for key, value in self.__dict__.items()
                if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state of ``state_dict()`` (the optimizer is not part of it)."""
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

    def _factor(self, step: int) -> float:
        return self.gamma ** (step // self.step_size)


class MultiStepLR(LRScheduler):
    """Multiply the lr by ``gamma`` at each milestone (a milestone listed twice counts twice)::

        lr = base_lr * gamma ** (number of milestones <= last_epoch)
    """

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1,
                 last_epoch: int = -1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, step: int) -> float:
        return self.gamma ** bisect_right(self.milestones, step)


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

    def _factor(self, step: int) -> float:
        return (1 + math.cos(math.pi * step / self.T_max)) / 2

    def _chain_floor(self) -> float:
        return self.eta_min


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

    def _factor(self, step: int) -> float:
        progress = min(step, self.total_iters) / self.total_iters
        return self.start_factor + (self.end_factor - self.start_factor) * progress


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


def _chain_lr(lr: float, base_lr: float, before: float, after: float, floor: float) -> float:
    """The lr after a chainable schedule's factor went from ``before`` to ``after`` while
    the optimizer held ``lr``: scaled by the same ratio above ``floor``."""
    if before == 0:  # no ratio from zero: move by the difference (PyTorch's cosine)
        return lr + (base_lr - floor) * (after - before)
    return floor + (lr - floor) * (after / before)


class ExponentialLR(LRScheduler):
    """Multiply the lr by ``gamma`` every step::

        lr = base_lr * gamma ** last_epoch
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _factor(self, step: int) -> float:
        return self.gamma ** step


class ConstantLR(LRScheduler):
    """Scale the lr by ``factor`` for the first ``total_iters`` steps, then restore it (a
    simple warm-up)::

        lr = base_lr * factor   if last_epoch < total_iters   else base_lr
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1):
        if not 0 <= factor <= 1:
            raise ValueError(f"ConstantLR: constant multiplicative factor expected to be "
                             f"between 0 and 1, got factor={factor}")
        if not isinstance(total_iters, int) or total_iters < 0:
            raise ValueError(f"ConstantLR: expected a non-negative integer total_iters, got "
                             f"{total_iters!r}")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _factor(self, step: int) -> float:
        return self.factor if step < self.total_iters else 1.0


class PolynomialLR(LRScheduler):
    """Decay the lr to 0 over ``total_iters`` steps along a polynomial, then hold it::

        lr = base_lr * (1 - min(last_epoch, total_iters) / total_iters) ** power
    """

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1):
        _check_positive_int("PolynomialLR", "total_iters", total_iters)
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def _factor(self, step: int) -> float:
        return (1.0 - min(step, self.total_iters) / self.total_iters) ** self.power


class LambdaLR(LRScheduler):
    """The lr is ``base_lr`` times a function of the step, one per group or one for all::

        lr = base_lr * lr_lambda(last_epoch)

    ``state_dict()`` does not hold the functions (plain functions and lambdas are code,
    and checkpoints hold data only); as in PyTorch it keeps the attributes of callable
    objects, and None for functions. Build the scheduler with the same functions before
    ``load_state_dict``.
    """

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1):
        groups = optimizer.param_groups if isinstance(optimizer, Optimizer) else []
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != len(groups):
                raise ValueError(f"LambdaLR: expected {len(groups)} lr_lambdas (one per "
                                 f"parameter group), but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * len(groups)
        for i, fn in enumerate(self.lr_lambdas):
            if not callable(fn):
                raise TypeError(f"LambdaLR: lr_lambda {i} is a {type(fn).__name__}, not a "
                                "function of the step")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base_lr * fn(self.last_epoch)
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]

    def state_dict(self) -> dict:
        state = {key: _copy(value) for key, value in self.__dict__.items()
                 if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else
                               _copy(dict(fn.__dict__)) for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        lambdas = state.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        if len(lambdas) != len(self.lr_lambdas):
            raise ValueError(f"LambdaLR.load_state_dict: the state dict has "
                             f"{len(lambdas)} lr_lambdas, this scheduler "
                             f"{len(self.lr_lambdas)}")
        self.__dict__.update({key: _copy(value) for key, value in state.items()})
        for fn, saved in zip(self.lr_lambdas, lambdas):
            if saved is not None:
                fn.__dict__.update(_copy(saved))


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_0`` steps, then a restart
    at ``base_lr``; each cycle ``T_mult`` times longer than the last (SGDR, Loshchilov &
    Hutter)::

        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2

    with ``T_cur`` the steps since the last restart and ``T_i`` the current cycle's
    length. ``step(epoch)`` accepts a fractional epoch, e.g. ``epoch + i / iters`` after
    batch ``i``, as PyTorch's does.
    """

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1,
                 eta_min: float = 0.0, last_epoch: int = -1):
        op = "CosineAnnealingWarmRestarts"
        _check_positive_int(op, "T_0", T_0)
        if not isinstance(T_mult, int) or isinstance(T_mult, bool) or T_mult < 1:
            raise ValueError(f"{op}: expected an integer T_mult >= 1, but got {T_mult!r}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(f"{op}: expected a float or int eta_min, but got {eta_min!r}")
        self.T_0, self.T_i, self.T_mult = T_0, T_0, T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [self.eta_min + (base_lr - self.eta_min) * cosine for base_lr in self.base_lrs]

    def step(self, epoch=None) -> None:
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:  # a restart
                self.T_cur -= self.T_i
                self.T_i *= self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts: expected a non-negative "
                                 f"epoch, but got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:  # the cycle n that holds epoch: T_0 (T_mult^n - 1) / (T_mult - 1)
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())


class ChainedScheduler(LRScheduler):
    """Step several schedules at once, each changing the lr the previous ones left::

        warmup = ConstantLR(optimizer, factor=0.1, total_iters=5)
        decay = ExponentialLR(optimizer, gamma=0.9)
        scheduler = ChainedScheduler([warmup, decay])   # lr = base * 0.1 * 0.9^t, then ...

    As in PyTorch: a schedule with a ratio form (step, exponential, linear, constant,
    polynomial, cosine) multiplies the lr by its own change, ``lr * new / old`` (cosine:
    above ``eta_min``); LambdaLR, OneCycleLR and CosineAnnealingWarmRestarts write their
    own value. Build it from freshly made schedulers, in the order they should apply.
    ``ReduceLROnPlateau`` (which needs a metric), ``SequentialLR`` and another
    ``ChainedScheduler`` cannot be chained.
    """

    def __init__(self, schedulers, optimizer: Optimizer | None = None):
        op = "ChainedScheduler"
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError(f"{op} expects at least one scheduler to be chained, but got "
                             "no scheduler")
        optimizer = optimizer if optimizer is not None else \
            getattr(schedulers[0], "optimizer", None)
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"{op}: the scheduler at index {i} is a "
                                f"{type(scheduler).__name__}, not an LRScheduler")
            if isinstance(scheduler, (ReduceLROnPlateau, SequentialLR, ChainedScheduler)):
                raise ValueError(f"{op} cannot chain {type(scheduler).__name__} (index {i}): "
                                 "ReduceLROnPlateau needs a metric in step(), and "
                                 "SequentialLR and ChainedScheduler step schedules of their "
                                 "own")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"{op} expects all schedulers to belong to the same "
                                 f"optimizer, but the scheduler {type(scheduler).__name__} "
                                 f"at index {i} has a different one")
        self._schedulers = schedulers
        self.optimizer = optimizer
        # Building each scheduler wrote its own lr; compose their first values instead,
        # as PyTorch's schedulers do when each is built on the lr the previous one left.
        lrs = [group["initial_lr"] for group in optimizer.param_groups]
        for scheduler in schedulers:
            lrs = self._apply(scheduler, lrs, scheduler.get_lr())
        self._last_lr = lrs

    @staticmethod
    def _apply(scheduler, lrs, own) -> list[float]:
        """The lrs after ``scheduler`` took its step ``last_epoch`` (its own lrs: ``own``),
        starting from ``lrs``; written into the optimizer and its ``get_last_lr()``."""
        if scheduler._chainable:
            step = scheduler.last_epoch  # factor(-1) = 1: the step from base_lr to step 0
            before = scheduler._factor(step - 1) if step > 0 else 1.0
            after, floor = scheduler._factor(step), scheduler._chain_floor()
            lrs = [_chain_lr(lr, base_lr, before, after, floor)
                   for lr, base_lr in zip(lrs, scheduler.base_lrs)]
        else:
            lrs = list(own)
        scheduler._set_lrs(lrs)
        return lrs

    def step(self) -> None:
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        for scheduler in self._schedulers:
            scheduler.step()  # advances its state and writes its own value ...
            lrs = self._apply(scheduler, lrs, scheduler.get_last_lr())  # ... then chained
        self._last_lr = lrs

    def state_dict(self) -> dict:
        state = {key: _copy(value) for key, value in self.__dict__.items()
                 if key not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self._schedulers)
        return f"ChainedScheduler([{names}], last_lr={self.get_last_lr()})"

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)  # pop from a copy: the caller's dict stays whole
        schedulers = state.pop("_schedulers")
        if len(schedulers) != len(self._schedulers):
            raise ValueError(f"ChainedScheduler.load_state_dict: the state dict holds "
                             f"{len(schedulers)} schedulers, this chain "
                             f"{len(self._schedulers)}")
        self.__dict__.update({key: _copy(value) for key, value in state.items()})
        for scheduler, saved in zip(self._schedulers, schedulers):
            scheduler.load_state_dict(saved)


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` when a metric has not improved for ``patience``
    steps (then wait ``cooldown`` steps before counting again); never below ``min_lr``::

        scheduler = ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=10)
        for epoch in range(100):
            train_one_epoch(model, optimizer)
            scheduler.step(validation_loss)

    "Improved" means below ``best * (1 - threshold)`` in mode ``'min'`` with
    ``threshold_mode='rel'`` (above ``best * (1 + threshold)`` in mode ``'max'``), or
    beyond ``best -/+ threshold`` with ``threshold_mode='abs'``. A reduction smaller than
    ``eps`` is skipped. As PyTorch's, its ``step`` takes the metric and it has no
    ``base_lrs``.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr=0, eps: float = 1e-8):
        op = "ReduceLROnPlateau"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{op}: {type(optimizer).__name__} is not an Optimizer")
        if factor >= 1.0:
            raise ValueError(f"{op}: factor should be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{op}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{op}: threshold_mode must be 'rel' or 'abs', got "
                             f"{threshold_mode!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{op}: expected a non-negative integer {name}, got {value!r}")
        self.optimizer = optimizer
        groups = optimizer.param_groups
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"{op}: expected {len(groups)} min_lrs (one per parameter "
                                 f"group), got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(groups)
        self.factor, self.patience, self.cooldown, self.eps = factor, patience, cooldown, eps
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in groups]
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def get_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self, metrics) -> None:  # the metric is required, as in PyTorch
        """Record this step's metric (e.g. the validation loss); lower the lr if it has
        not improved for more than ``patience`` steps."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(self.min_lrs) != len(groups):
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {len(groups)} "
                                   f"parameter groups but min_lr lists {len(self.min_lrs)} "
                                   "(a group was added): set scheduler.min_lrs to match")
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def _is_better(self, current: float, best: float) -> bool:
        if self.mode == "min":
            bar = best * (1.0 - self.threshold) if self.threshold_mode == "rel" \
                else best - self.threshold
            return current < bar
        bar = best * (1.0 + self.threshold) if self.threshold_mode == "rel" \
            else best + self.threshold
        return current > bar
