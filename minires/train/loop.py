"""The training loop: read it top to bottom.

One epoch = for every batch one *step*: forward, loss, backward, optimizer step (and the
scheduler, if it steps per batch). Running loss and accuracy stay on the device and are
read back (a host sync) only every ``log_every`` steps and at the end of the epoch.
After each epoch: evaluate on the test set, step a per-epoch scheduler, save a
checkpoint, append a metrics line.

Exact resume, at any moment, on every device:

* **Stops happen between steps.** While ``fit`` runs, Ctrl-C (SIGINT) and SIGTERM only
  set a flag (``interrupt.StopRequest``). The loop looks at it after each whole step
  and between evaluation batches, saves a checkpoint there, with the loader's position
  after the last finished step, and raises ``TrainingInterrupted``. A step is never
  half done (no batch skipped, no half-updated model); a second Ctrl-C stops at once
  without saving.
* **Randomness is a function of the position.** Step ``s`` of epoch ``e`` runs inside
  ``backend.random_stream("step", seed, e, s)``: its dropout masks come from
  generators seeded with that key alone, and the DataLoader augments batch ``b`` of
  epoch ``e`` in its own keyed stream. The state of every random stream a step uses *is*
  the position (epoch, step), on NumPy and on CuPy alike (whose generators have no
  state that could be read back), and finding it costs no host sync.
* **The epoch's sums are saved.** ``RunState`` (``state.py``) holds the running
  loss and accuracy sums, the images seen and the time spent: a resumed epoch reports
  the same train_loss and train_acc as an uninterrupted one.

A non-finite loss stops the run: the loop checks the sums where it reads them anyway
(the logging steps and the epoch's end, so no extra host sync per step on a GPU), and
before every checkpoint it checks the weights and the optimizer's state, so the last
good checkpoint is never overwritten with NaNs. ``NonFiniteError`` names the epoch, the
step and that checkpoint.

Several ranks (a ``DistributedDataParallel`` model, ``mpiexec -n R minires train``) run
this same loop, each on its share of every global batch; ``parallel.World`` is the
handful of places where they act together: rank 0 alone writes and prints, the stop
flag is agreed after every step, the sums are combined where they are read, and the
evaluation is sharded (``parallel.py`` says what each costs).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time

import numpy
from tqdm import tqdm

from .. import backend
from ..autograd import no_grad
from ..distributed import DistributedDataParallel
from ..nn import functional as F
from ..nn.norm import _BatchNorm
from .checkpoint import save_checkpoint
from .errors import NonFiniteError, TrainingInterrupted
from .interrupt import StopRequest
from .parallel import World
from .state import RunState


def evaluate(model, loader, should_stop=None, *, process_group=None) -> dict | None:
    """Mean loss and accuracy of ``model`` over ``loader``, in eval mode, without a graph.

    With ``should_stop`` (a function), returns None as soon as it says so (checked
    between batches): evaluation has no state worth saving, it is simply run again.

    Several ranks (``process_group``, or that of a ``DistributedDataParallel`` model):
    rank r evaluates batches r, r + R, ... of ``loader`` (which every rank iterates) and
    one all-reduce of the per-batch sums gives every rank the same result, bit for bit
    the one of a single process; ``should_stop`` is then agreed after each round of R
    batches.
    """
    world = World.of(model, process_group)
    last = len(loader) - 1 if world.size > 1 else None
    was_training = model.training
    model.eval()
    sums, counts = [], []  # device scalars of this rank's batches; every batch's size
    try:
        with no_grad():
            for b, (images, labels) in enumerate(loader):
                counts.append(labels.shape[0])
                if b % world.size == world.rank:
                    logits = model(images)
                    sums.append(F.cross_entropy(logits, labels, reduction="sum").data)
                    sums.append((logits.data.argmax(axis=1) == labels.data).sum())
                end_of_round = b % world.size == world.size - 1 or b == last
                if should_stop is not None and end_of_round and world.any(should_stop()):
                    return None
    finally:
        model.train(was_training)
    # one row per batch, summed in batch order: the same numbers on any number of ranks
    table = numpy.zeros((len(counts), 2))
    if sums:
        table[world.rank::world.size] = numpy.reshape(backend.host_floats(*sums), (-1, 2))
    if world.size > 1:  # each row comes from the one rank that computed it; x + 0 is exact
        world.group.all_reduce(table, "sum")
    count = max(sum(counts), 1)
    return {"loss": math.fsum(table[:, 0]) / count, "acc": math.fsum(table[:, 1]) / count}


def train_mode(model) -> None:
    """``model.train()``, except BatchNorm layers whose weights are frozen: a frozen
    layer should not drift, so its running statistics stay fixed as well."""
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and params and not any(p.requires_grad
                                                                  for p in params):
            module.eval()


def _device_of(model) -> str:
    for p in model.parameters():
        return backend.device_of(p.data)
    return "cpu"


def _step_stream(run: RunState, world: World):
    """The random stream of the run's next step (none without a seed: global draws)."""
    if run.seed is None:
        return contextlib.nullcontext()
    return backend.random_stream("step", run.seed, run.epoch, run.step, *world.step_key())


def train_one_epoch(model, loader, optimizer, scheduler=None, step_per_batch: bool = False,
                    progress=None, log_every: int = 20, *, run: RunState | None = None,
                    should_stop=None, world: World | None = None) -> dict | None:
    """Train one epoch; return its mean loss, accuracy, seconds and images per second.

    With ``run`` (a ``RunState``) it continues the epoch that ``run`` is in: ``loader``
    must stand at ``run.step`` (``DataLoader.load_state_dict`` puts it there), and the
    sums carry on from the run's. With ``should_stop`` (a function), it returns None
    after the first step at which it says so; ``run`` then holds where it stopped.
    A non-finite loss raises ``NonFiniteError`` at the next read of the sums.

    ``world`` (default: that of a ``DistributedDataParallel`` model): the ranks whose
    shares of each global batch make one step; ``run`` then holds this rank's sums.
    """
    world = world if world is not None else World.of(model)
    run = run if run is not None else RunState()
    run.to(_device_of(model))
    train_mode(model)
    seconds_before, start = run.seconds, time.perf_counter()
    for images, labels in loader:
        n = labels.shape[0]  # this rank's images; total: all ranks'
        total = world.images(loader, run.step, n)
        weight = world.loss_weight(n, total)
        with _step_stream(run, world):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            (loss * weight if weight != 1.0 else loss).backward()
            optimizer.step()
        if scheduler is not None and step_per_batch:
            scheduler.step()
        xp = backend.array_module(loss.data)
        # device scalars: no host sync per step. first_bad keeps the first step whose
        # loss was not finite (it changes only while it is 0), so the error can name it.
        run.loss_sum = run.loss_sum + loss.data * n
        run.correct = run.correct + (logits.data.argmax(axis=1) == labels.data).sum()
        bad = (~xp.isfinite(loss.data)) * (run.step + 1)
        run.first_bad = run.first_bad + (run.first_bad == 0) * bad
        run.count += total
        run.step += 1
        run.seconds = seconds_before + (time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
        if run.step % log_every == 0:  # the one host sync per logging step
            loss_total, correct_total, first_bad = world.read_sums(run)
            _check_finite(loss_total, first_bad, run)
            if progress is not None:
                progress.set_postfix(loss=f"{loss_total / run.count:.3f}",
                                     acc=f"{correct_total / run.count:.3f}",
                                     img_s=f"{run.count / run.seconds:.0f}")
        if should_stop is not None and should_stop():
            return None
    run.phase = "evaluate"
    loss_total, correct_total, first_bad = world.read_sums(run)  # the epoch's one host sync
    _check_finite(loss_total, first_bad, run)
    return run.train_metrics(loss_total, correct_total)


def _check_finite(loss_sum: float, first_bad: int, run: RunState) -> None:
    if not math.isfinite(loss_sum):
        step = first_bad or run.step
        raise NonFiniteError(f"the training loss became {loss_sum} at epoch {run.epoch}, "
                             f"step {step}", epoch=run.epoch, step=step)


def _first_non_finite(model, optimizer) -> str | None:
    """The name of the first weight, buffer or optimizer state array that holds a NaN
    or an infinity, or None (one read from the device when all is well)."""
    names = {id(p): name for name, p in model.named_parameters()}
    named = [(k, v.data) for k, v in model.state_dict(keep_vars=True).items()]
    for p, state in optimizer.state.items():  # the live arrays: state_dict() copies
        named += [(f"the optimizer's {k} of {names.get(id(p), 'a parameter')}", v)
                  for k, v in state.items() if hasattr(v, "dtype")]
    named = [(name, a) for name, a in named if a.dtype.kind == "f"]
    if not named:
        return None
    xp = backend.array_module(*(a for _, a in named))
    finite = backend.to_numpy(xp.stack([xp.isfinite(a).all() for _, a in named]))
    for (name, _), ok in zip(named, finite):
        if not ok:
            return name
    return None


def fit(model, optimizer, train_loader, test_loader, epochs: int, *, scheduler=None,
        step_per_batch: bool = False, out_dir=None, start_epoch: int = 0, history=None,
        config: dict | None = None, progress: bool = True, log_every: int = 20,
        run: RunState | None = None, handle_signals: bool = True,
        process_group=None) -> list:
    """Train up to epoch ``epochs``; return the metrics history (one row per epoch).

    A fresh run starts at epoch ``start_epoch + 1`` with ``history``; a resumed one
    passes ``run``, the ``RunState`` of its checkpoint (``checkpoint.run_state``), after
    restoring the model, optimizer, scheduler and loader (``checkpoint.restore``).

    With ``out_dir``, writes ``checkpoint.mr`` (after every epoch, and where a signal
    stopped the run), ``metrics.jsonl`` (one strict-JSON line per epoch) and
    ``curves.png``. Ctrl-C or SIGTERM (with ``handle_signals``, in the main thread)
    stops at the next step boundary: checkpoint, then ``TrainingInterrupted``. A
    non-finite loss raises ``NonFiniteError`` and writes nothing.

    Data-parallel: with a ``DistributedDataParallel`` model (or ``process_group``) and a
    train loader that gives each rank its share of the global batch
    (``DataLoader(num_replicas=R, rank=r)``), every rank calls ``fit`` alike; rank 0
    alone shows progress and writes, a signal on any rank stops all of them after the
    same step, and the checkpoint (of the unwrapped model) resumes on any number of
    ranks.
    """
    world = World.of(model, process_group)
    module = model.module if isinstance(model, DistributedDataParallel) else model
    if run is None:
        seed = getattr(train_loader, "seed", None)
        if seed is None:
            seed = int(backend.generator(numpy).integers(0, 2**63 - 1))
        seed = world.first(seed)[1]  # rank 0's: the step streams must agree
        run = RunState(epoch=start_epoch + 1, seed=seed, history=list(history or []))
    run = run.localize(world.rank, world.size)  # this rank's part of the running sums
    progress = progress and world.writes
    writes = out_dir is not None and world.writes
    paths = _paths(out_dir, create=world.writes)
    last_good = None  # the checkpoint a failure leaves behind, described
    if out_dir is not None and os.path.exists(paths["checkpoint"]):
        last_good = f"{paths['checkpoint']} (as this run found it: {_position(run)})"

    def ensure_finite() -> None:
        """Before the run's state goes anywhere: no NaN in the sums or the weights."""
        loss_sum, _, first_bad = world.read_sums(run)
        _check_finite(loss_sum, first_bad, run)
        rank, bad = world.first(_first_non_finite(module, optimizer))
        if bad is not None:
            where = f" on rank {rank}" if world.size > 1 else ""
            raise NonFiniteError(f"{bad} became non-finite{where} by epoch {run.epoch}, "
                                 f"step {run.step}", epoch=run.epoch, step=run.step)

    def checkpoint() -> str | None:
        nonlocal last_good
        if out_dir is None:
            return None
        state = world.combined(run)  # every rank's sums (a collective)
        if world.writes:
            save_checkpoint(paths["checkpoint"], model=module, optimizer=optimizer,
                            scheduler=scheduler, loader=train_loader, config=config,
                            run=state)
        last_good = f"{paths['checkpoint']} ({_position(run)})"
        return paths["checkpoint"]

    def stopped(signal: str | None, where: str | None = None):
        signal = world.first(signal)[1]  # the signal of the first rank it reached
        if where is None:
            ensure_finite()
            where = checkpoint()
        done = (f"epoch {run.epoch}, after step {run.step} of {len(train_loader)}"
                if run.phase == "train" else f"epoch {run.epoch}, during its evaluation")
        message = f"interrupted ({signal}) at {done}: " + (
            f"checkpoint saved to {where}; continue with --resume {where}" if where
            else "nothing saved (no output folder)")
        return TrainingInterrupted(message, checkpoint=where, epoch=run.epoch, step=run.step,
                                   signal=signal)

    try:
        with StopRequest(enabled=handle_signals) as stop:
            def agreed_stop() -> bool:  # a signal on any rank stops every rank here
                return world.any(stop.requested())

            while run.epoch <= epochs:
                if run.phase == "train":
                    with tqdm(total=len(train_loader), initial=run.step, unit="batch",
                              desc=f"epoch {run.epoch}/{epochs}", disable=not progress,
                              leave=True) as bar:
                        train = train_one_epoch(model, train_loader, optimizer, scheduler,
                                                step_per_batch, bar, log_every, run=run,
                                                should_stop=agreed_stop, world=world)
                    if train is None:
                        raise stopped(stop.signal)
                else:  # resumed after a stop during evaluation
                    train = run.train_metrics(*world.read_sums(run)[:2])
                test = evaluate(model, test_loader, should_stop=stop.requested,
                                process_group=world.group)
                if test is None:
                    raise stopped(stop.signal)
                lr = optimizer.param_groups[0]["lr"]
                if scheduler is not None and not step_per_batch:
                    scheduler.step()
                row = {"epoch": run.epoch, "train_loss": train["loss"],
                       "train_acc": train["acc"], "test_loss": test["loss"],
                       "test_acc": test["acc"], "lr": lr, "seconds": train["seconds"],
                       "images_per_s": train["images_per_s"]}
                if progress:
                    tqdm.write(f"epoch {run.epoch}/{epochs}: loss {train['loss']:.3f}, acc "
                               f"{train['acc']:.3f}, test_acc {test['acc']:.3f}, "
                               f"{train['images_per_s']:.0f} img/s")
                ensure_finite()
                run.history.append(row)
                run.next_epoch()
                saved = checkpoint()  # first: a metrics line never claims more than it holds
                if writes:
                    with open(paths["metrics"], "a") as f:
                        f.write(json_line(row))
                if agreed_stop():
                    raise stopped(stop.signal, saved)
            if writes and run.history:  # a signal now: the run is complete
                from .plots import plot_curves

                plot_curves(run.history, paths["curves"],
                            title=(config or {}).get("model", ""))
    except NonFiniteError as error:
        where = last_good or "none (no checkpoint was written before)"
        raise NonFiniteError(f"{error}; stopped. The last good checkpoint, left untouched: "
                             f"{where}. A smaller learning rate (--lr) usually helps",
                             epoch=error.epoch, step=error.step,
                             checkpoint=paths.get("checkpoint") if last_good else None) from None
    return run.history


def _position(run: RunState) -> str:
    if run.phase == "evaluate":
        return f"epoch {run.epoch}, before its evaluation"
    if run.step == 0:
        return f"after epoch {run.completed_epochs}"
    return f"epoch {run.epoch}, after step {run.step}"


def json_line(row: dict) -> str:
    """One strict-JSON line: NaN and infinity become null (JSON has neither)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


def _paths(out_dir, create: bool = True) -> dict:
    if out_dir is None:
        return {}
    if create:
        os.makedirs(out_dir, exist_ok=True)
    return {"checkpoint": os.path.join(out_dir, "checkpoint.mr"),
            "metrics": os.path.join(out_dir, "metrics.jsonl"),
            "curves": os.path.join(out_dir, "curves.png")}
