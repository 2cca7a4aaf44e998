"""The training loop (``minires.train.fit``) on 2 ranks, in float64, against 1 process.

tests/test_distributed_train.py runs ``mpiexec -n 2 python tests/distributed_train_worker.py
FOLDER``. Every run trains the same small CNN (BatchNorm: SyncBatchNorm on 2 ranks, plain
BatchNorm in 1 process) on 99 augmented CIFAR-10 sample images in global batches of 32,
so the last batch of each epoch (3 images) splits unevenly (2 + 1). Rank 0 writes
``{check: value}`` to FOLDER/results.json; the test asserts on it.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np

import minires as mr
import minires.distributed as dist
import minires.nn as nn
from minires.data import DataLoader, TensorDataset, get_dataset
from minires.data import transforms as T
from minires.optim import SGD
from minires.train import (
    NonFiniteError,
    TrainingInterrupted,
    evaluate,
    fit,
    load_checkpoint,
    restore,
    run_state,
)

EPOCHS, BATCH = 2, 32
dist.init_process_group()
RANK, WORLD = dist.get_rank(), dist.get_world_size()
_train = get_dataset("cifar10-sample", train=True)
_test = get_dataset("cifar10-sample", train=False)
TRAIN = TensorDataset(_train.data[:99], _train.targets[:99])
TEST = TensorDataset(_test.data[:200], _test.targets[:200])
NORMALIZE = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
AUGMENT = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), NORMALIZE])


class Float64(nn.Module):
    """Casts the loader's float32 images to float64."""

    def forward(self, x):
        return x.double()


class NaNOnce(nn.Module):
    """Multiplies its input by NaN at one forward call (counted in training mode)."""

    def __init__(self, at: int | None):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                return x * float("nan")
        return x


def make_model(ranks: int, nan_at: int | None = None):
    """The CNN; with 2 ranks its BatchNorm is a SyncBatchNorm and it is wrapped in DDP."""
    mr.manual_seed(0)
    model = nn.Sequential(Float64(), nn.Conv2d(3, 4, 3, padding=1, bias=False),
                          nn.BatchNorm2d(4), nn.ReLU(), NaNOnce(nan_at), nn.MaxPool2d(4),
                          nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).double()
    if ranks > 1:
        return dist.DistributedDataParallel(dist.convert_sync_batchnorm(model))
    return model


def parts(ranks: int, nan_at: int | None = None):
    model = make_model(ranks, nan_at)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    train = DataLoader(TRAIN, BATCH, shuffle=True, seed=7, transform=AUGMENT,
                       num_replicas=ranks, rank=RANK if ranks > 1 else 0)
    test = DataLoader(TEST, 64, seed=0, transform=NORMALIZE)
    return model, optimizer, train, test


def weights(model) -> dict:
    module = model.module if isinstance(model, dist.DistributedDataParallel) else model
    return {k: v.data.copy() for k, v in module.state_dict().items()}


def difference(a: dict, b: dict) -> float:
    """The largest difference of any weight, buffer or counter between two states."""
    assert list(a) == list(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def signal_after_step(optimizer, step: int, signum) -> None:
    """This process sends itself ``signum`` right after optimizer step ``step``."""
    original, count = optimizer.step, [0]

    def step_then_signal():
        original()
        count[0] += 1
        if count[0] == step:
            os.kill(os.getpid(), signum)

    optimizer.step = step_then_signal


def train(ranks: int, out=None, signal_at=None, resume=None, nan_at=None, log_every=20):
    """One run on ``ranks`` ranks -> (weights, history or the stop, as a dict)."""
    model, optimizer, train_loader, test_loader = parts(ranks, nan_at)
    run = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        restore(checkpoint, model=model.module if ranks > 1 else model, optimizer=optimizer,
                loader=train_loader)
        run = run_state(checkpoint)
    if signal_at is not None and signal_at[0] == RANK:
        signal_after_step(optimizer, signal_at[1], signal_at[2])
    try:
        history = fit(model, optimizer, train_loader, test_loader, EPOCHS, out_dir=out,
                      progress=False, run=run, log_every=log_every)
    except TrainingInterrupted as stop:
        return weights(model), {"stopped": [stop.epoch, stop.step, stop.signal, str(stop)]}
    except NonFiniteError as error:
        return weights(model), {"non_finite": [error.epoch, error.step, str(error)]}
    return weights(model), history


def gathered(value) -> list:
    return dist.default_group().all_gather_object(value)


def main(folder: str) -> None:
    results = {}
    one, one_history = train(1)  # every rank: the reference of one process, in memory
    two, two_history = train(2, out=os.path.join(folder, "two"))
    results["two_vs_one_weights"] = difference(two, one)
    start = weights(make_model(1))
    results["weights_moved"] = float(np.max(np.abs(two["1.weight"] - start["1.weight"])))
    results["histories"] = [one_history, two_history]
    across = gathered({k: v.tolist() for k, v in two.items()})
    results["ranks_differ_by"] = difference({k: np.array(v) for k, v in across[0].items()},
                                            {k: np.array(v) for k, v in across[1].items()})

    # sharded evaluation against one process, on the trained 2-rank model
    model, _, _, test_loader = parts(2)
    model.module.load_state_dict(two)
    sharded = evaluate(model, test_loader)
    single = evaluate(model.module, test_loader)
    results["evaluation"] = [sharded, single]

    # a SIGINT that reaches rank 1 alone, after step 5 (epoch 2, step 1 of 4)
    stopped_at = os.path.join(folder, "stopped2")
    _, stop = train(2, out=stopped_at, signal_at=(1, 5, signal.SIGINT))
    results["stop_on_each_rank"] = gathered(stop)
    checkpoint = os.path.join(stopped_at, "checkpoint.mr")
    resumed2, resumed2_history = train(2, resume=checkpoint)
    results["resumed_by_2_vs_uninterrupted_2"] = difference(resumed2, two)
    results["resumed_by_2_history"] = resumed2_history
    if RANK == 0:  # the same checkpoint, continued by one process
        resumed1, resumed1_history = train(1, resume=checkpoint)
        results["resumed_by_1_vs_one"] = difference(resumed1, one)
        results["resumed_by_1_history"] = resumed1_history
    dist.barrier()

    # the reverse: one process stops after step 3 (mid-epoch 1), two ranks continue
    stopped_alone = os.path.join(folder, "stopped1")
    if RANK == 0:
        _, stop = train(1, out=stopped_alone, signal_at=(0, 3, signal.SIGTERM))
        results["stop_alone"] = stop
    dist.barrier()
    resumed, resumed_history = train(2, resume=os.path.join(stopped_alone, "checkpoint.mr"))
    results["one_resumed_by_2_vs_one"] = difference(resumed, one)
    results["one_resumed_by_2_history"] = resumed_history

    # SIGTERM on rank 0 alone: both ranks stop, and both name SIGTERM
    _, stop = train(2, signal_at=(0, 2, signal.SIGTERM))
    results["sigterm_on_rank0"] = gathered(stop)

    # rank 1's loss becomes NaN at step 3: both ranks stop at the next read (step 4)
    _, stop = train(2, nan_at=3 if RANK == 1 else None, log_every=2)
    results["nan_on_rank1"] = gathered(stop)

    if RANK == 0:
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
