"""Host synchronisations of the training loop, counted by the CuPy stand-in.

On a GPU every read of device data by the host waits for all the work queued before it.
``minires/train/loop.py`` documents its reads: the running loss and accuracy stay on the
device, and the loop reads them through ``backend.host_floats`` once per logging step
(every ``log_every`` batches) and once at the end of the epoch; evaluation reads once at
its end. ``host_floats`` makes one transfer for the values, and one more for the value
checks that ops queued on the device meanwhile (``backend.check_value``: a target class
out of range, for example), when there are any.

The stand-in records every read with the minires line that caused it, so these tests
hold the loop to exactly that: no read inside a training step, exactly one
``host_floats`` per logging step, and nothing else. (On a real GPU,
tests/test_train.py times the same thing against a kernel that keeps the GPU busy.)
"""

import sys

import pytest

import minires as mr
from minires import backend
from minires.models import get_model
from minires.optim import SGD
from minires.train import DEFAULTS
from minires.train.loop import evaluate, train_one_epoch
from minires.train.recipe import make_loaders

pytestmark = pytest.mark.cuda


@pytest.fixture
def syncs():
    standin = sys.modules.get("cupy_standin")
    if not getattr(standin, "IS_STANDIN", False) or not mr.cuda.is_available():
        pytest.skip("counts host reads with the CuPy stand-in (MINIRES_CUPY_STANDIN=1)")
    return standin.syncs


class Bar:
    """What the loop uses of a tqdm bar (a disabled tqdm would do as well)."""

    def update(self, n):
        pass

    def set_postfix(self, **values):
        self.values = values


def setup(batches: int, batch_size: int = 4):
    config = {**DEFAULTS, "dataset": "cifar10-sample", "limit_train": batches * batch_size,
              "batch_size": batch_size, "device": "cuda"}
    train_loader, test_loader = make_loaders(config)
    model = get_model("resnet20", num_classes=10).to("cuda")
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    return model, optimizer, train_loader, test_loader


def run_epoch_watched(syncs, monkeypatch, model, optimizer, loader, log_every, step_hook=None):
    """Train one epoch; per step: the host reads inside it and inside its host_floats
    calls (with the value checks pending at each call)."""
    calls = []  # (events inside one host_floats call, value checks pending at the call)
    host_floats = backend.host_floats

    def counted(*values):
        pending = len(backend._pending_checks)
        with syncs.recording() as events:
            result = host_floats(*values)
        calls.append((list(events), pending))
        return result

    monkeypatch.setattr(backend, "host_floats", counted)
    steps = []

    def watched(batches):
        for batch in batches:
            reads, start = len(syncs.events), len(calls)
            yield batch  # the loop runs the whole step, log read included, before next()
            steps.append((syncs.events[reads:], calls[start:]))

    if step_hook is not None:
        monkeypatch.setattr(optimizer, "step", step_hook(optimizer.step))
    with syncs.recording() as everything:
        train_one_epoch(model, watched(loader), optimizer, progress=Bar(), log_every=log_every)
    return steps, calls, everything


def test_training_steps_read_nothing_and_log_steps_read_once_through_host_floats(
        syncs, monkeypatch):
    model, optimizer, loader, _ = setup(batches=6)
    steps, calls, everything = run_epoch_watched(syncs, monkeypatch, model, optimizer,
                                                 loader, log_every=2)
    assert len(steps) == 6
    for number, (events, step_calls) in enumerate(steps, 1):
        if number % 2:
            assert events == [] and step_calls == [], \
                f"step {number} read from the device:\n{syncs.summary(events)}"
            continue
        assert len(step_calls) == 1, f"log step {number}: {len(step_calls)} host_floats calls"
        inside, pending = step_calls[0]
        assert events == inside, (
            f"log step {number} read outside host_floats:\n"
            f"{syncs.summary([e for e in events if e not in inside])}")
        # one transfer for loss and accuracy, one for the queued value checks
        assert len(inside) == 1 + (pending > 0), syncs.summary(inside)
        assert pending > 0  # cross_entropy queued its target check on the device
        assert all(e.kind == "read" and any(f.startswith("minires/train/loop.py:")
                                            for f in e.stack) for e in inside)
    # and the end of the epoch: one more host_floats, nothing else
    assert len(calls) == 3 + 1
    assert sum(len(inside) for inside, _ in calls) == len(everything), \
        syncs.summary(everything)


def test_evaluation_reads_once_at_its_end(syncs, monkeypatch):
    # three batches of four images: the test loader's batches of 500 would make the same
    # reads, and take minutes where the kernels run one thread at a time on the CPU
    model, _, loader, _ = setup(batches=3)
    limited = list(loader)
    assert len(limited) == 3
    calls = []
    host_floats = backend.host_floats
    monkeypatch.setattr(backend, "host_floats",
                        lambda *v: calls.append(len(backend._pending_checks)) or host_floats(*v))
    with syncs.recording() as events:
        evaluate(model, limited)
    assert len(calls) == 1, calls
    assert len(events) == 1 + (calls[0] > 0), syncs.summary(events)
    assert all(any(f.startswith("minires/train/loop.py:") for f in e.stack) for e in events)


def test_a_read_inside_a_step_is_caught_with_its_minires_line(syncs, monkeypatch):
    """Tests the test: a step that reads a value (here: Tensor.item() after the
    optimizer step) shows up at that step, with the line in minires that read."""
    model, optimizer, loader, _ = setup(batches=3)

    def reading_step(step):
        def run():
            step()
            optimizer.param_groups[0]["params"][0].sum().item()
        return run

    steps, _, _ = run_epoch_watched(syncs, monkeypatch, model, optimizer, loader,
                                    log_every=100, step_hook=reading_step)
    for events, _ in steps:
        # Tensor.item() reads the value checks that are pending, then the value
        assert [e.what for e in events] == ["ndarray.get", "ndarray.item"], events
        assert all(e.site.startswith("minires/tensors.py:") for e in events), events
