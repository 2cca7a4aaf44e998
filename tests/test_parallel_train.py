"""Data-parallel training, the parts that need no second process: the loader's split of
each global batch, the run state's per-rank sums, the settings checks, the log line and
``--nproc``'s launch. (tests/test_distributed_train.py runs 2 real ranks.)"""

from __future__ import annotations

import numpy as np
import pytest

import minires.nn as nn
from minires.data import DataLoader, TensorDataset
from minires.data import transforms as T
from minires.distributed import DistributedSampler
from minires.tools.cli import main
from minires.train import ConfigError, RunState, launch, parallel


def dataset(n: int = 99) -> TensorDataset:
    rng = np.random.default_rng(0)
    return TensorDataset(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8),
                         rng.integers(0, 10, n))


AUGMENT = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip()])


def loaders(world: int, transform=AUGMENT, batch_size: int = 32, n: int = 99) -> list:
    data = dataset(n)
    return [DataLoader(data, batch_size, shuffle=True, seed=5, transform=transform,
                       num_replicas=world, rank=r) for r in range(world)]


class Group:
    """A stand-in process group: only its rank and size are read here."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size


# --------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_shares_of_a_global_batch_are_one_process_batch_augmented_alike(world):
    (one,), shards = loaders(1), loaders(world)
    assert [len(s) for s in shards] == [len(one)] * world  # global batches: 4
    for epoch in range(2):  # a reshuffle in between
        for b, (whole, *parts) in enumerate(zip(one, *shards)):
            for k in range(2):  # images, then labels
                joined = np.empty_like(whole[k].data)
                for r, part in enumerate(parts):
                    joined[r::world] = part[k].data  # rank r: rows r, r + R, ...
                np.testing.assert_array_equal(joined, whole[k].data, f"epoch {epoch} batch {b}")
    last = len(one) - 1  # 99 = 3 x 32 + 3
    assert one.global_batch_size(last) == 3
    assert [s.rank_batch_size(last) for s in shards] == [len(range(r, 3, world))
                                                        for r in range(world)]


def test_without_random_transforms_a_rank_loads_only_its_rows(monkeypatch):
    shard = loaders(2, transform=None)[1]
    sizes = []
    build = shard._batch
    monkeypatch.setattr(shard, "_batch", lambda indices: sizes.append(len(indices)) or
                        build(indices))
    list(shard)
    assert sizes == [16, 16, 16, 1]  # not the global 32
    with_augment = loaders(2)[1]
    assert with_augment._draws_random_numbers() and not shard._draws_random_numbers()


def test_a_position_saved_with_two_ranks_resumes_with_three_and_with_one():
    (one,), two, three = loaders(1), loaders(2), loaders(3)
    for loader in two:
        it = iter(loader)
        next(it), next(it)
    state = two[0].state_dict()
    assert state == two[1].state_dict() == {"seed": 5, "epoch": 0, "batch": 2}
    for loader in [one] + three:
        loader.load_state_dict(state)
    rest = [batch[0].data for batch in one]
    shards = [[batch[0].data for batch in loader] for loader in three]
    assert len(rest) == 2 and all(len(s) == 2 for s in shards)
    for b, whole in enumerate(rest):
        for r in range(3):
            np.testing.assert_array_equal(shards[r][b], whole[r::3])


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 2, "num_replicas": 3, "rank": 0}, "a global batch_size of 2 cannot give "
                                                      "each of 3 ranks an image"),
    ({"batch_size": 32, "num_replicas": 2, "rank": 2}, "rank 2 is not in a world of 2"),
    ({"batch_size": 49, "num_replicas": 2, "rank": 0}, "a global batch of 1 image(s) (the last "
                                                       "of each epoch: 50 images in batches "
                                                       "of 49) cannot give each of 2 ranks"),
    ({"batch_size": 8, "num_replicas": 2, "rank": 0, "sampler": DistributedSampler(
        50, num_replicas=1, rank=0)}, "num_replicas and a sampler exclude each other"),
])
def test_a_split_that_leaves_a_rank_without_images_is_refused(kwargs, message):
    with pytest.raises(ValueError, match="DataLoader") as error:
        DataLoader(dataset(50), **kwargs)
    assert message in str(error.value)


# --------------------------------------------------------------------------- the run state


def test_a_combined_run_state_gives_each_of_as_many_ranks_its_own_sums_back():
    ranks = [RunState(epoch=2, step=3, seed=1, loss_sum=np.float32(1.25), correct=np.int64(7),
                      count=96, part=(r, 2)) for r in range(2)]
    ranks[1].loss_sum, ranks[1].correct = np.float32(2.5), np.int64(9)
    parts = [(float(r.loss_sum), float(r.correct), 0) for r in ranks]
    saved = ranks[0].combined(parts).state_dict()
    assert (saved["loss_sum"], saved["correct"], saved["count"]) == (3.75, 16, 96)
    assert saved["loss_sum"].dtype == np.float32 and saved["correct"].dtype == np.int64
    again = RunState.from_state_dict(saved)
    for r in range(2):  # as many ranks: each its own part, bit for bit
        mine = again.localize(r, 2)
        assert (mine.loss_sum, mine.correct, mine.part) == (ranks[r].loss_sum,
                                                            ranks[r].correct, (r, 2))
    for r in range(3):  # another number: the total on rank 0, zeros of the same type
        mine = again.localize(r, 3)
        assert mine.loss_sum == (3.75 if r == 0 else 0) and mine.loss_sum.dtype == np.float32
        assert mine.correct == (16 if r == 0 else 0)
    assert again.localize(0, 1) is again  # one process: the saved total


def test_one_rank_part_of_the_sums_is_never_saved_alone():
    part = RunState(loss_sum=1.0, part=(1, 2))
    with pytest.raises(ValueError, match="one rank's part"):
        part.state_dict()
    with pytest.raises(ValueError, match="rank 1's part of a run of 2 ranks"):
        part.localize(0, 2)


# --------------------------------------------------------------------------- the recipe's checks


def test_a_world_of_one_communicates_nothing():
    world = parallel.World()
    assert (world.rank, world.size, world.writes, world.step_key()) == (0, 1, True, ())
    assert world.any(True) and not world.any(False)
    assert world.first(None) == (None, None) and world.first("x") == (0, "x")
    assert world.loss_weight(3, 3) == 1.0
    run = RunState(loss_sum=2.0, correct=1, first_bad=0)
    assert world.combined(run) is run and world.read_sums(run) == (2.0, 1.0, 0)


def test_the_loss_weight_makes_an_uneven_split_average_to_the_global_mean():
    world = parallel.World(Group(0, 2))
    assert world.loss_weight(16, 32) == 1.0  # even: exactly 1, no rounding added
    weights = [world.loss_weight(2, 3), world.loss_weight(1, 3)]  # 3 images: 2 + 1
    # the mean over ranks of (weight x rank's mean loss) is the mean over the 3 images
    losses = [np.array([1.0, 4.0]), np.array([7.0])]
    averaged = sum(w * l.mean() for w, l in zip(weights, losses)) / 2
    assert averaged == pytest.approx(np.concatenate(losses).mean())


@pytest.mark.parametrize("batch, images, message", [
    (1, 96, "--batch-size 1 cannot give each of 2 ranks an image"),
    (32, 97, "the last batch of each epoch (1 of 97 images in batches of 32) cannot give "
             "each of 2 ranks an image"),
])
def test_settings_that_leave_a_rank_without_images_are_config_errors(batch, images, message):
    with pytest.raises(ConfigError) as error:
        parallel.check_settings({"batch_size": batch, "sync_bn": False}, images,
                                parallel.World(Group(0, 2)))
    assert message in str(error.value)
    with pytest.raises(ConfigError, match="--sync-bn is on or off"):
        parallel.check_settings({"batch_size": 32, "sync_bn": "yes"}, 96, parallel.World())


def test_the_log_line_states_the_global_batch_the_split_and_the_learning_rate():
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    config = {"batch_size": 128, "lr": 0.1}
    line = parallel.describe(config, parallel.World(Group(0, 2)), bn)
    assert line.startswith("data-parallel on 2 ranks: global batch 128 = 2 ranks x 64, lr 0.1")
    assert "BatchNorm: statistics of each rank's 64 images" in line and "--sync-bn" in line
    uneven = parallel.describe({"batch_size": 101, "lr": 0.1}, parallel.World(Group(0, 2)),
                               nn.Linear(2, 2))
    assert "global batch 101 = 1 rank x 51 + 1 x 50, lr 0.1" in uneven
    assert "BatchNorm" not in uneven


# --------------------------------------------------------------------------- --nproc


def test_nproc_leaves_its_own_option_out_of_the_command_it_starts(monkeypatch):
    monkeypatch.setattr(launch, "has_mpi4py", lambda: True)
    monkeypatch.setattr(launch, "find_mpiexec", lambda: "/opt/mpi/bin/mpiexec")
    monkeypatch.setattr(launch, "available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    path, args, env = launch.command(4, ["train", "--nproc", "4", "--lr", "0.1",
                                         "--nproc=4"])
    assert path == "/opt/mpi/bin/mpiexec"
    assert args[:3] == ["/opt/mpi/bin/mpiexec", "-n", "4"]
    assert args[-4:] == ["minires", "train", "--lr", "0.1"]
    assert env["OMP_NUM_THREADS"] == "2"  # 8 cores / 4 processes
    assert env["OPENBLAS_NUM_THREADS"] == "3"  # set by the user: kept


@pytest.mark.parametrize("missing, fragment", [
    ("mpiexec", "--nproc 2 needs mpiexec, which was not found"),
    ("mpi4py", "--nproc 2 needs mpi4py, which is not installed: pip install "
               "'minires[distributed]'"),
])
def test_nproc_without_mpi_is_a_one_line_error(missing, fragment, monkeypatch, capsys):
    monkeypatch.setattr(launch, "has_mpi4py", lambda: missing != "mpi4py")
    monkeypatch.setattr(launch, "find_mpiexec", lambda: None if missing == "mpiexec" else "x")
    monkeypatch.setattr(launch.os, "execve", lambda *a: pytest.fail("started mpiexec"))
    with pytest.raises(SystemExit) as stop:
        main(["train", "--nproc", "2", "--model", "mlp"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"minires: error: {fragment}")
    assert err.count("\n") == 1


def test_nproc_that_contradicts_mpiexec_or_is_below_1_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "3")
    for nproc, fragment in ((2, "--nproc 2, but an MPI launcher started 3 processes"),
                            (0, "--nproc must be an integer >= 1, got 0")):
        with pytest.raises(SystemExit) as stop:
            main(["train", "--nproc", str(nproc)])
        assert stop.value.code == 2
        assert capsys.readouterr().err.startswith(f"minires: error: {fragment}")


def test_nproc_1_trains_in_this_process(monkeypatch, capsys):
    import minires.train

    monkeypatch.setattr(launch, "relaunch", lambda *a: pytest.fail("started mpiexec"))
    seen = {}

    def run_training(**config):
        seen.update(config)
        return {"test_acc": 0.5, "checkpoint": "c", "log": "l", "plot": "p"}

    monkeypatch.setattr(minires.train, "run_training", run_training)
    main(["train", "--nproc", "1", "--model", "mlp", "--sync-bn"])
    assert seen == {"model": "mlp", "sync_bn": True}  # --nproc is not a setting of the run
    assert "test accuracy: 50.00%" in capsys.readouterr().out
