"""Exact resume at any moment: a signal anywhere in a step (forward, backward, inside the
optimizer's update, the scheduler, data loading), during evaluation or while a
checkpoint is written stops the run at a step boundary, and the resumed run ends with
the weights, optimizer and scheduler state, loader position, random state and metrics
of an uninterrupted run, bit for bit. Also: keyed random streams, a non-finite loss."""

import json
import os
import signal

import numpy as np
import pytest

import minires as mr
import minires.nn as nn
from minires import backend
from minires.data import CIFAR10, DataLoader, TensorDataset
from minires.data import transforms as T
from minires.models.mlps import MLP
from minires.optim import SGD, lr_scheduler
from minires.train import (
    NonFiniteError,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    restore,
    run_state,
    run_training,
)
from minires.train import loop as train_loop

# 3 steps per epoch (96 images, batch 32), random crops and flips, SGD with momentum
QUICK = dict(model="mlp", dataset="cifar10-sample", limit_train=96, batch_size=32,
             epochs=2, lr=0.02, progress=False)
PER_BATCH = dict(QUICK, schedule="onecycle")  # the scheduler steps inside each step
TIMING = {"seconds", "images_per_s"}


def same(a, b, where="checkpoint"):
    """Equal values, arrays bit for bit with their dtypes."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif hasattr(a, "dtype"):
        a, b = backend.to_numpy(getattr(a, "data", a)), backend.to_numpy(getattr(b, "data", b))
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def assert_same_run(folder_a, folder_b):
    a = load_checkpoint(os.path.join(folder_a, "checkpoint.mr"))
    b = load_checkpoint(os.path.join(folder_b, "checkpoint.mr"))
    for key in ("epoch", "model", "optimizer", "scheduler", "loader", "rng"):
        same(a[key], b[key], key)
    same(without_timing(a["history"]), without_timing(b["history"]), "history")
    run_a = {k: v for k, v in a["run"].items() if k not in ("seconds", "history")}
    run_b = {k: v for k, v in b["run"].items() if k not in ("seconds", "history")}
    same(run_a, run_b, "run")
    rows = [[json.loads(line) for line in open(os.path.join(f, "metrics.jsonl"))]
            for f in (folder_a, folder_b)]
    same(without_timing(rows[0]), without_timing(rows[1]), "metrics.jsonl")


def signal_on_call(monkeypatch, target, name, when, sig=signal.SIGINT, only=None):
    """Send ``sig`` to this process from inside ``target.name`` on the ``when``-th call
    (counting only calls where ``only(*args)`` holds), before the call does its work."""
    original = getattr(target, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        if only is None or only(*args):
            calls["n"] += 1
            if calls["n"] == when:
                os.kill(os.getpid(), sig)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return calls


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted runs, by configuration name."""
    runs = {}
    for name, config in (("epoch", QUICK), ("batch", PER_BATCH)):
        out = str(tmp_path_factory.mktemp(f"straight-{name}"))
        run_training(**config, out=out)
        runs[name] = out
    return runs


def training(*args):
    return args[0].training


def evaluating(*args):
    return not args[0].training


def train_loader(*args):
    return args[0].shuffle


# (what is hit, how) -> where the run must stop: (epoch, finished steps, phase)
POINTS = {
    "forward": (lambda mp: signal_on_call(mp, MLP, "forward", 5, only=training),
                (2, 2, "train")),
    "backward": (lambda mp: signal_on_call(mp, mr.Tensor, "backward", 2), (1, 2, "train")),
    # _state_of runs once per parameter inside SGD.step: the 35th call is the fifth of
    # ten parameters of the first step of epoch 2, half way through the update
    "inside optimizer.step": (lambda mp: signal_on_call(mp, SGD, "_state_of", 35),
                              (2, 1, "train")),
    # loading the last batch of epoch 1: the run stops after that epoch's last step
    "data loading": (lambda mp: signal_on_call(mp, DataLoader, "_batch", 3, only=train_loader),
                     (1, 3, "train")),
    # the first forward in eval mode is the recipe's check that the model takes the data
    "evaluation": (lambda mp: signal_on_call(mp, MLP, "forward", 2, only=evaluating),
                   (1, 3, "evaluate")),
    "sigterm in forward": (lambda mp: signal_on_call(mp, MLP, "forward", 3, sig=signal.SIGTERM,
                                                     only=training), (1, 3, "train")),
    "checkpoint writing": (lambda mp: signal_on_call(mp, train_loop, "save_checkpoint", 1),
                           (2, 0, "train")),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_a_signal_anywhere_stops_at_a_step_boundary_and_resumes_bit_for_bit(
        point, straight, tmp_path, monkeypatch):
    inject, (epoch, step, phase) = POINTS[point]
    inject(monkeypatch)
    with pytest.raises(TrainingInterrupted) as stop:
        run_training(**QUICK, out=str(tmp_path))
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path / "checkpoint.mr")
    assert (stop.value.epoch, stop.value.step) == (epoch, step)
    assert (saved["run"]["epoch"], saved["run"]["step"], saved["run"]["phase"]) == \
        (epoch, step, phase)
    assert stop.value.signal == ("SIGTERM" if "sigterm" in point else "SIGINT")
    assert stop.value.checkpoint == str(tmp_path / "checkpoint.mr")
    run_training(resume=str(tmp_path / "checkpoint.mr"), progress=False)
    assert_same_run(straight["epoch"], tmp_path)


def test_a_signal_inside_a_per_batch_scheduler_step_resumes_bit_for_bit(straight, tmp_path,
                                                                      monkeypatch):
    signal_on_call(monkeypatch, lr_scheduler.OneCycleLR, "step", 5)  # the 1st is at build
    with pytest.raises(TrainingInterrupted) as stop:
        run_training(**PER_BATCH, out=str(tmp_path))
    monkeypatch.undo()
    assert (stop.value.epoch, stop.value.step) == (2, 1)
    run_training(resume=str(tmp_path / "checkpoint.mr"), progress=False)
    assert_same_run(straight["batch"], tmp_path)


def test_stopping_twice_in_a_row_resumes_bit_for_bit(straight, tmp_path, monkeypatch):
    signal_on_call(monkeypatch, mr.Tensor, "backward", 2)
    with pytest.raises(TrainingInterrupted):
        run_training(**QUICK, out=str(tmp_path))
    signal_on_call(monkeypatch, mr.Tensor, "backward", 2)  # the resumed run's: epoch 2, step 1
    with pytest.raises(TrainingInterrupted) as stop:
        run_training(resume=str(tmp_path / "checkpoint.mr"), progress=False)
    monkeypatch.undo()
    assert (stop.value.epoch, stop.value.step) == (2, 1)
    run_training(resume=str(tmp_path / "checkpoint.mr"), progress=False)
    assert_same_run(straight["epoch"], tmp_path)


def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    handler = signal.getsignal(signal.SIGINT)
    calls = {"n": 0}
    original = mr.Tensor.backward

    def twice(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, step 2: the first asks, the second insists
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mr.Tensor, "backward", twice)
    with pytest.raises(KeyboardInterrupt) as stop:
        run_training(**QUICK, out=str(tmp_path))
    assert not isinstance(stop.value, TrainingInterrupted)
    saved = load_checkpoint(tmp_path / "checkpoint.mr")  # the one of epoch 1's end
    assert (saved["run"]["epoch"], saved["run"]["step"]) == (2, 0)
    assert signal.getsignal(signal.SIGINT) is handler  # put back as it was


def test_a_checkpoint_from_before_run_states_still_resumes(tmp_path):
    run_training(**{**QUICK, "epochs": 1}, out=str(tmp_path))
    old = mr.load(tmp_path / "checkpoint.mr")
    del old["run"]  # as minires wrote it before: epochs done and the loader's position
    mr.save(old, tmp_path / "checkpoint.mr")
    resumed = run_training(resume=str(tmp_path / "checkpoint.mr"), epochs=2, progress=False)
    assert [row["epoch"] for row in resumed["history"]] == [1, 2]


def test_a_checkpoint_lacking_a_part_is_refused_by_name(tmp_path):
    from minires.serialization import CheckpointError

    mr.save({"format": "minires-checkpoint", "epoch": 1, "model": {}}, tmp_path / "c.mr")
    with pytest.raises(CheckpointError, match=r"c\.mr: a training checkpoint without "
                                              r"optimizer, scheduler"):
        load_checkpoint(tmp_path / "c.mr")


# --------------------------------------------------------------------------- Python API


class DropoutNet(nn.Module):
    """Dropout draws in every step: its masks must come back the same on resume."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(3 * 32 * 32, 32)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.drop(self.relu(self.fc1(self.flatten(x)))))


def api_run(device="cpu"):
    """Model, optimizer, scheduler and loaders, built the same way every time."""
    mr.manual_seed(0)
    data = CIFAR10(sample=True)
    train = TensorDataset(data.data[:80], data.targets[:80], classes=data.classes)
    test = TensorDataset(data.data[:60], data.targets[:60], classes=data.classes)
    normalize = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
    augment = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), normalize])
    model = DropoutNet().to(device)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return dict(model=model, optimizer=optimizer, scheduler=scheduler,
                train_loader=DataLoader(train, 20, shuffle=True, seed=5, transform=augment,
                                        device=device),
                test_loader=DataLoader(test, 30, transform=normalize, device=device))


def api_fit(parts, out, run=None):
    return fit(parts["model"], parts["optimizer"], parts["train_loader"],
               parts["test_loader"], 2, scheduler=parts["scheduler"], out_dir=str(out),
               progress=False, run=run)


@pytest.mark.parametrize("when", [2, 6, 8])  # epoch 1 step 2, epoch 2 steps 2 and 4 (last)
def test_fit_resumes_mid_epoch_with_dropout_and_augmentation_bit_for_bit(when, device,
                                                                        tmp_path, monkeypatch):
    """On a GPU too: there the crops, flips and dropout masks are drawn by CuPy."""
    api_fit(api_run(device), tmp_path / "straight")
    signal_on_call(monkeypatch, nn.Dropout, "forward", when, only=training)
    with pytest.raises(TrainingInterrupted) as stop:
        api_fit(api_run(device), tmp_path / "resumed")
    monkeypatch.undo()
    assert stop.value.step == (when - 1) % 4 + 1
    parts = api_run(device)
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoint.mr", map_location=device)
    restore(checkpoint, model=parts["model"], optimizer=parts["optimizer"],
            scheduler=parts["scheduler"], loader=parts["train_loader"])
    api_fit(parts, tmp_path / "resumed", run=run_state(checkpoint, device))
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_fit_without_an_output_folder_stops_cleanly_on_a_signal(monkeypatch):
    parts = api_run()
    signal_on_call(monkeypatch, nn.Dropout, "forward", 3, only=training)
    with pytest.raises(TrainingInterrupted) as stop:
        fit(parts["model"], parts["optimizer"], parts["train_loader"], parts["test_loader"],
            2, progress=False)
    assert stop.value.checkpoint is None and stop.value.step == 3
    assert "nothing saved" in str(stop.value)


# --------------------------------------------------------------------------- random streams


def test_a_keyed_stream_depends_on_its_key_alone_and_leaves_the_global_generator():
    mr.manual_seed(1)
    before = backend.get_rng_state()
    with backend.random_stream("step", 7, 2, 3):
        a = mr.rand(5).numpy()
        with backend.random_stream("DataLoader", 7, 2, 3):  # same numbers, other tag
            inner = mr.rand(5).numpy()
        a_next = mr.rand(5).numpy()  # the outer stream carries on after the inner one
    assert backend.get_rng_state() == before
    mr.randn(100)  # whatever the global generator did meanwhile
    with backend.random_stream("step", 7, 2, 3):
        np.testing.assert_array_equal(mr.rand(5).numpy(), a)
        np.testing.assert_array_equal(mr.rand(5).numpy(), a_next)
    with backend.random_stream("step", 7, 2, 4):
        assert not np.array_equal(mr.rand(5).numpy(), a)
    assert not np.array_equal(inner, a)
    with pytest.raises(ValueError, match="non-negative integers"):
        with backend.random_stream("step", -1):
            pass


class FakeCupyRandom:
    """NumPy dressed as CuPy's random module: the counted generator's logic, without a GPU."""

    Generator = np.random.Generator

    @staticmethod
    def Philox4x3210(seeds, size):
        return np.random.Philox(seeds)


class FakeCupy:
    __name__ = "fakecupy"
    random = FakeCupyRandom


def test_the_global_gpu_generator_state_is_a_draw_count_that_round_trips(tmp_path):
    fake = FakeCupy()
    mr.manual_seed(3)
    backend.generator(fake).random(4)
    state = json.loads(json.dumps(backend.get_rng_state()))  # plain values
    assert state["cupy_draws"] == 1
    expected = [backend.generator(fake).random(4), backend.generator(fake).integers(0, 9, 3)]
    mr.manual_seed(99)
    backend.generator(fake).random(4)
    backend.set_rng_state(state)
    again = [backend.generator(fake).random(4), backend.generator(fake).integers(0, 9, 3)]
    for x, y in zip(expected, again):
        np.testing.assert_array_equal(x, y)
    assert backend.get_rng_state()["cupy_draws"] == 3
    assert not np.array_equal(expected[0], backend.generator(fake).random(4))  # draw 4
    draws = []
    for _ in range(2):  # a keyed stream on the GPU: its own Philox generator, same numbers
        with backend.random_stream("step", 1, 2, 3):
            draws.append(backend.generator(fake).random(4))
    np.testing.assert_array_equal(draws[0], draws[1])
    assert backend.get_rng_state()["cupy_draws"] == 4  # the global one was not touched


def test_manual_seed_refuses_what_is_not_a_seed():
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match="manual_seed"):
            mr.manual_seed(bad)


# --------------------------------------------------------------------------- NaN stops


def poison_loss(monkeypatch, at_call: int):
    """Make the training loss of one step NaN (cross_entropy's ``at_call``-th call)."""
    from minires.train import loop

    original, calls = loop.F.cross_entropy, {"n": 0}

    def cross_entropy(logits, labels, *args, **kwargs):
        loss = original(logits, labels, *args, **kwargs)
        if kwargs.get("reduction", "mean") == "mean":
            calls["n"] += 1
            if calls["n"] == at_call:
                loss = loss * float("nan")
        return loss

    monkeypatch.setattr(loop.F, "cross_entropy", cross_entropy)


def test_a_nan_loss_stops_the_run_and_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    poison_loss(monkeypatch, 5)  # epoch 2, step 2
    written = []
    original = train_loop.save_checkpoint

    def save_and_remember(path, **kwargs):
        original(path, **kwargs)
        written.append(open(path, "rb").read())

    monkeypatch.setattr(train_loop, "save_checkpoint", save_and_remember)
    with pytest.raises(NonFiniteError) as error:
        run_training(**{**QUICK, "epochs": 3}, out=str(tmp_path))
    monkeypatch.undo()
    assert len(written) == 1 and open(tmp_path / "checkpoint.mr", "rb").read() == written[0]
    message = str(error.value)
    assert "epoch 2, step 2" in message and str(tmp_path / "checkpoint.mr") in message
    assert (error.value.epoch, error.value.step) == (2, 2)
    saved = load_checkpoint(tmp_path / "checkpoint.mr")  # epoch 1's, with finite weights
    assert saved["epoch"] == 1
    assert all(np.isfinite(getattr(v, "data", v)).all() for v in saved["model"].values())

    def no_constants(name):
        raise AssertionError(f"bare {name} in metrics.jsonl")

    rows = [json.loads(line, parse_constant=no_constants)
            for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1]


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    original, calls = SGD.step, {"n": 0}

    def step_into_inf(self, *args):
        result = original(self, *args)
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1's last step: no loss of that epoch sees it
            self.param_groups[0]["params"][0].data[0, 0] = np.inf
        return result

    monkeypatch.setattr(SGD, "step", step_into_inf)
    with pytest.raises(NonFiniteError) as error:
        run_training(**QUICK, out=str(tmp_path))
    assert error.value.epoch == 1 and error.value.checkpoint is None
    assert "layers.0.fc.weight" in str(error.value)
    assert "none (no checkpoint was written before)" in str(error.value)
    assert not os.path.exists(tmp_path / "checkpoint.mr")


def test_metrics_lines_are_strict_json():
    from minires.train.loop import json_line

    line = json_line({"epoch": 1, "test_loss": float("nan"), "lr": float("inf"), "acc": 0.5})
    assert json.loads(line) == {"epoch": 1, "test_loss": None, "lr": None, "acc": 0.5}
