"""minires.distributed in one process: a world of one, the sampler, DDP's bookkeeping,
SyncBatchNorm against BatchNorm, and the abort hook. The 2-process checks are in
tests/test_distributed_mpi.py, the NCCL path with a stand-in in test_distributed_nccl.py.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import minires as mr
import minires.distributed as dist
import minires.nn as nn
import minires.nn.functional as F
from minires.data import DataLoader, TensorDataset
from minires.distributed import DistributedDataParallel, DistributedSampler, faults
from minires.models import get_model
from minires.optim import SGD


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch):
    """These tests are a world of one, even when pytest itself runs under mpiexec."""
    for name in dist.group.LAUNCHER_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- world of one


def test_a_world_of_one_needs_no_init_and_every_collective_is_the_identity():
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    x = np.arange(4.0)
    for op in ("sum", "mean", "max", "min", dist.ReduceOp.AVG):
        assert dist.all_reduce(x.copy(), op).tolist() == [0.0, 1.0, 2.0, 3.0]
    t = mr.tensor([1.0, 2.0])
    assert dist.all_reduce(t) is t and t.tolist() == [1.0, 2.0]
    assert dist.broadcast(x.copy(), src=0).tolist() == x.tolist()
    gathered = dist.all_gather([], t)
    assert len(gathered) == 1 and isinstance(gathered[0], mr.Tensor)
    assert gathered[0].tolist() == [1.0, 2.0]
    assert dist.all_gather_object([], {"a": (1, 2)}) == [{"a": [1, 2]}]  # JSON: lists
    assert dist.broadcast_object_list([3, "x"]) == [3, "x"]
    dist.barrier()
    dist.check_same_on_all_ranks({"seed": 1}, "settings")


def test_init_and_destroy_process_group_in_a_world_of_one():
    assert not dist.is_initialized()
    dist.init_process_group()  # no launcher: "auto" is the local world
    assert dist.is_initialized() and dist.get_world_size() == 1
    assert dist.default_group().backend == "local"
    with pytest.raises(RuntimeError, match="already initialized"):
        dist.init_process_group()
    dist.destroy_process_group()
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="no process group is initialized"):
        dist.destroy_process_group()
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group("gloo")


def test_forgetting_init_under_a_launcher_of_several_processes_is_an_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "4")
    assert dist.launcher_world_size() == 4
    with pytest.raises(RuntimeError, match="one of 4 started by an MPI launcher, but "
                                           "init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="use backend='mpi'"):
        dist.init_process_group("local")


def test_collectives_reject_bad_input_with_the_ops_name():
    with pytest.raises(TypeError, match="all_reduce: expected a minires Tensor or a NumPy"):
        dist.all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="unknown reduce op 'prod'"):
        dist.all_reduce(np.ones(2), "prod")
    with pytest.raises(TypeError, match="a mean of int64 values"):
        dist.all_reduce(np.ones(2, np.int64), "mean")
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="all_reduce: the array is read-only"):
        dist.all_reduce(frozen)
    with pytest.raises(ValueError, match="broadcast: src=1 is not a rank"):
        dist.broadcast(np.ones(2), src=1)
    with pytest.raises(ValueError, match="tensor_list has 2 entries but the world has 1"):
        dist.all_gather([np.zeros(2), np.zeros(2)], np.ones(2))
    with pytest.raises(TypeError, match="not JSON-able"):
        dist.all_gather_object([], {1, 2})


def test_first_difference_names_the_key_and_both_values():
    a = {"parameter 'fc.weight'": {"shape": [10, 32], "dtype": "float32"}, "n": 1}
    b = {"parameter 'fc.weight'": {"shape": [10, 64], "dtype": "float32"}, "n": 1}
    assert dist.group.first_difference(a, b) == ("parameter 'fc.weight', shape", [10, 32],
                                                 [10, 64])
    assert dist.group.first_difference(a, a) is None
    assert dist.group.first_difference({"x": 1}, {"y": 1}) == ("x", 1, "<missing>")


# --------------------------------------------------------------------------- abort hook


def test_abort_hook_prints_the_rank_on_every_line_and_calls_mpi_abort(monkeypatch, capsys):
    aborted = []
    fake_mpi = types.SimpleNamespace(COMM_WORLD=types.SimpleNamespace(Abort=aborted.append))
    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=fake_mpi))
    previous = sys.excepthook
    faults.install(rank=3, size=4)
    try:
        assert sys.excepthook is not previous
        try:
            raise KeyError("missing on rank 3")
        except KeyError as error:
            sys.excepthook(type(error), error, error.__traceback__)
    finally:
        faults.uninstall()
    assert sys.excepthook is previous
    assert aborted == [1]
    err = capsys.readouterr().err
    assert "[rank 3/4] uncaught exception; ending all 4 ranks" in err
    assert "[rank 3/4] KeyError: 'missing on rank 3'" in err
    assert all(line.startswith("[rank 3/4]") for line in err.strip().splitlines())


# --------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (11, 3), (7, 4), (3, 5), (128, 8)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards_are_disjoint_and_cover_the_data(n, world, drop_last):
    if drop_last and n < world:
        with pytest.raises(ValueError, match="cannot give each of"):
            DistributedSampler(n, num_replicas=world, rank=0, drop_last=drop_last)
        return
    samplers = [DistributedSampler(n, num_replicas=world, rank=r, seed=4, drop_last=drop_last)
                for r in range(world)]
    shards = [s.order(3) for s in samplers]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(samplers[0])
    served = np.concatenate(shards)
    if drop_last:  # cut: nothing twice, n % world left out
        assert len(set(served.tolist())) == len(served) == n // world * world
    else:  # padded: everything at least once, fewer than world samples twice
        assert set(served.tolist()) == set(range(n))
        assert len(served) == -(-n // world) * world
    # the shards interleave: rank r has global positions r, r + R, ...
    np.testing.assert_array_equal(np.stack(shards, axis=1).reshape(-1),
                                  samplers[0].global_order(3))


def test_sampler_reshuffles_each_epoch_from_seed_and_epoch_only():
    a = DistributedSampler(100, num_replicas=2, rank=1, seed=7)
    b = DistributedSampler(100, num_replicas=2, rank=1, seed=7)
    assert not np.array_equal(a.order(0), a.order(1))
    np.testing.assert_array_equal(a.order(5), b.order(5))  # any epoch, rebuilt from (seed, 5)
    c = DistributedSampler(100, num_replicas=2, rank=1, seed=8)
    assert not np.array_equal(a.order(0), c.order(0))
    plain = DistributedSampler(10, num_replicas=2, rank=1, shuffle=False)
    assert plain.order(0).tolist() == [1, 3, 5, 7, 9] == plain.order(1).tolist()


def test_sampler_iterates_like_pytorchs_with_set_epoch():
    s = DistributedSampler(20, num_replicas=2, rank=0, seed=1)
    assert list(s) == s.order(0).tolist() and len(s) == s.num_samples == 10
    s.set_epoch(4)
    assert list(s) == s.order(4).tolist()


def test_sampler_resumes_exactly_mid_epoch():
    s = DistributedSampler(50, num_replicas=2, rank=1, seed=2)
    s.set_epoch(3)
    it = iter(s)
    first = [next(it) for _ in range(7)]
    state = s.state_dict()
    assert state == {"seed": 2, "epoch": 3, "position": 14}  # 7 per rank, 2 ranks
    assert json.loads(json.dumps(state)) == state
    rest = list(it)
    resumed = DistributedSampler(50, num_replicas=2, rank=1, seed=99)
    resumed.load_state_dict(state)
    assert list(resumed) == rest and first + rest == s.order(3).tolist()


def test_sampler_resumes_with_a_different_number_of_ranks():
    """2 ranks used the first 18 positions of epoch 1 (3 steps of global batch 6); 3 ranks
    serve the rest: every sample of the epoch exactly once, plus the one repeat that pads
    41 to 42."""
    n, position = 41, 18
    before = [DistributedSampler(n, num_replicas=2, rank=r, seed=6).order(1)[:position // 2]
              for r in range(2)]
    after = []
    for r in range(3):
        s = DistributedSampler(n, num_replicas=3, rank=r, seed=6)
        s.load_state_dict({"seed": 6, "epoch": 1, "position": position})
        after.append(list(s))
    permutation = np.random.default_rng([6, 1]).permutation(n)
    used = sorted(np.concatenate(before).tolist())
    rest = sorted(sum(after, []))
    assert used == sorted(permutation[:position].tolist())
    assert rest == sorted(permutation[position:].tolist() + [int(permutation[0])])
    assert {len(a) for a in after} == {(42 - position) // 3}


def test_sampler_splits_an_uneven_rest_evenly_so_every_rank_runs_the_same_steps():
    """After 17 positions, 3 ranks: the rest of 42 (padded) is 25, padded again to 27;
    the rest of 39 (cut) is 22, cut to 21. Equal lengths: no rank waits for a step."""
    permutation = np.random.default_rng([6, 1]).permutation(41)
    for drop_last, per_rank in ((False, 9), (True, 7)):
        orders = [DistributedSampler(41, num_replicas=3, rank=r, seed=6, drop_last=drop_last)
                  .order(1, position=17) for r in range(3)]
        assert [len(o) for o in orders] == [per_rank] * 3
        served = np.concatenate(orders).tolist()
        if drop_last:
            assert len(set(served)) == 21 and set(served) <= set(permutation[17:39].tolist())
        else:
            # the epoch's own padding (position 41 repeats its first sample) comes along
            assert set(served) == set(permutation[17:].tolist() + [int(permutation[0])])


def test_sampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        DistributedSampler(10, num_replicas=2, rank=0, seed=-1)
    with pytest.raises(ValueError, match="num_replicas must be"):
        DistributedSampler(10, num_replicas=2.5, rank=0)


def test_dataloader_takes_the_sampler_order_and_length():
    data = TensorDataset(np.arange(11 * 3 * 2 * 2, dtype=np.uint8).reshape(11, 3, 2, 2),
                         np.arange(11))
    sampler = DistributedSampler(data, num_replicas=2, rank=1, seed=0)
    loader = DataLoader(data, batch_size=4, sampler=sampler)
    assert len(loader) == 2  # 6 samples on this rank
    labels = np.concatenate([y.numpy() for _, y in loader])
    np.testing.assert_array_equal(labels, sampler.order(0))
    labels = np.concatenate([y.numpy() for _, y in loader])  # the next epoch reshuffles
    np.testing.assert_array_equal(labels, sampler.order(1))
    with pytest.raises(ValueError, match="sampler and shuffle=True exclude each other"):
        DataLoader(data, batch_size=4, sampler=sampler, shuffle=True)


# --------------------------------------------------------------------------- DDP, world of one


def mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).double()


def twins(make=mlp):
    mr.manual_seed(0)
    model, twin = make(), make()
    twin.load_state_dict(model.state_dict())
    return model, twin


def batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return mr.tensor(rng.standard_normal((n, 5))), mr.tensor(rng.integers(0, 3, n))


def test_ddp_in_a_world_of_one_gives_the_plain_gradients_in_one_allreduce_per_bucket():
    model, twin = twins()
    ddp = DistributedDataParallel(model, bucket_cap_mb=1e-4)  # a bucket per parameter
    assert ddp.module is model and ddp.bucket_sizes == [3, 24, 8, 40]  # last layer first
    x, y = batch()
    F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.data, q.grad.data)
    assert ddp.comm_calls == 4
    one = DistributedDataParallel(mlp())
    assert len(one.bucket_sizes) == 1  # 75 values fit the default bucket
    assert list(ddp.state_dict())[0] == "module.0.weight"  # PyTorch's keys


def test_ddp_trains_like_the_plain_model_with_sgd():
    model, twin = twins()
    ddp = DistributedDataParallel(model, overlap=False)
    for m in (ddp, twin):
        opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
        for step in range(3):
            x, y = batch(seed=step)
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=1e-15)


def test_ddp_no_sync_accumulates_and_the_next_backward_reduces_the_sum():
    model, twin = twins()
    ddp = DistributedDataParallel(model)
    batches = [batch(seed=s) for s in range(3)]
    with ddp.no_sync():
        for x, y in batches[:2]:
            F.cross_entropy(ddp(x), y).backward()
    assert ddp.comm_calls == 0
    F.cross_entropy(ddp(batches[2][0]), batches[2][1]).backward()
    assert ddp.comm_calls == 1
    for x, y in batches:
        F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=0, atol=1e-15)


def test_ddp_counts_a_parameter_used_twice_in_forward():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4).double()

        def forward(self, x):
            return self.lin(self.lin(x))

    model, twin = twins(Twice)
    ddp = DistributedDataParallel(model)
    x = mr.randn(3, 4, dtype=mr.float64)
    (ddp(x) ** 2).sum().backward()
    (twin(x) ** 2).sum().backward()
    np.testing.assert_array_equal(model.lin.weight.grad.data, twin.lin.weight.grad.data)
    np.testing.assert_array_equal(model.lin.bias.grad.data, twin.lin.bias.grad.data)


def test_ddp_gives_an_unused_parameter_a_zero_gradient():
    class Partial(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    model = Partial()
    ddp = DistributedDataParallel(model)
    ddp(mr.randn(4, 3)).sum().backward()
    assert model.used.weight.grad is not None
    np.testing.assert_array_equal(model.unused.weight.grad.data, 0.0)


def test_ddp_forward_without_backward_is_dropped_and_no_grad_forward_records_nothing():
    model, twin = twins()
    ddp = DistributedDataParallel(model)
    x, y = batch()
    ddp(x)  # an evaluation forward with grad enabled, never backpropagated
    with mr.no_grad():
        ddp(x)
    F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.data, q.grad.data)


def test_ddp_error_when_an_output_is_left_out_of_the_loss_names_the_parameter():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 2)

        def forward(self, x):
            return self.a(x), self.b(x)

    ddp = DistributedDataParallel(TwoHeads())
    first, _ = ddp(mr.randn(4, 3))
    first.sum().backward()
    with pytest.raises(RuntimeError, match=r"2 got no final gradient, the first: 'b.weight'\), "
                                           r"so its gradients were NOT averaged"):
        ddp(mr.randn(4, 3))


def test_ddp_error_when_a_parameter_is_also_used_outside_forward():
    model = nn.Linear(3, 2)
    ddp = DistributedDataParallel(model)
    loss = ddp(mr.randn(4, 3)).sum() + (model.weight * model.weight).sum()
    with pytest.raises(RuntimeError, match="parameter 'weight' received more gradients"):
        loss.backward()


def test_ddp_error_on_a_second_backward_through_one_forward():
    ddp = DistributedDataParallel(mlp())
    loss = ddp(batch()[0]).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice through one forward"):
        loss.backward()
    ddp(batch()[0]).sum().backward()  # the next step is fine again


def test_ddp_error_when_the_wrapped_module_is_backpropagated_without_the_wrapper():
    model = mlp()
    ddp = DistributedDataParallel(model)
    ddp(batch()[0]).sum().backward()
    with pytest.raises(RuntimeError, match="the module called without the wrapper"):
        model(batch()[0]).sum().backward()


def test_ddp_rejects_bad_construction():
    model = mlp()
    DistributedDataParallel(model)
    with pytest.raises(RuntimeError, match="already belongs to another DistributedDataParallel"):
        DistributedDataParallel(model)
    with pytest.raises(TypeError, match="expected an nn.Module, got function"):
        DistributedDataParallel(lambda x: x)
    with pytest.raises(ValueError, match="no parameter that requires a gradient"):
        DistributedDataParallel(mlp().requires_grad_(False))
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        DistributedDataParallel(mlp(), bucket_cap_mb=0)


def test_ddp_resnet20_in_a_world_of_one_matches_the_plain_model():
    model, twin = twins(lambda: get_model("resnet20", num_classes=10).double())
    ddp = DistributedDataParallel(model, bucket_cap_mb=0.5)  # several buckets
    assert len(ddp.bucket_sizes) > 1
    x = mr.randn(2, 3, 16, 16, dtype=mr.float64)  # small images: the same 59 gradients
    y = mr.tensor([1, 2])
    F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(twin(x), y).backward()
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.data, q.grad.data)


# --------------------------------------------------------------------------- SyncBatchNorm


def test_sync_batchnorm_in_a_world_of_one_equals_batchnorm2d():
    bn = nn.BatchNorm2d(3).double()
    sync = nn.SyncBatchNorm(3).double()
    sync.load_state_dict(bn.state_dict())
    x = mr.randn(4, 3, 5, 5, dtype=mr.float64, requires_grad=True)
    u = mr.randn(4, 3, 5, 5, dtype=mr.float64)
    for _ in range(2):  # the second step starts from updated running statistics
        outputs, grads = [], []
        for layer in (bn, sync):
            x.grad = None
            y = layer(x)
            (y * u).sum().backward()
            outputs.append(y.data)
            grads.append([x.grad.data, layer.weight.grad.data, layer.bias.grad.data])
            layer.zero_grad()
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=0, atol=1e-14)
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    for key, value in bn.state_dict().items():
        np.testing.assert_allclose(sync.state_dict()[key].data, value.data, rtol=0, atol=1e-15)
    bn.eval(), sync.eval()
    np.testing.assert_allclose(sync(x).data, bn(x).data, rtol=0, atol=1e-14)


def test_sync_batchnorm_momentum_none_and_no_running_stats_follow_batchnorm():
    x = mr.randn(6, 2, dtype=mr.float64)
    for kwargs in ({"momentum": None}, {"track_running_stats": False}, {"affine": False}):
        bn, sync = nn.BatchNorm1d(2, **kwargs).double(), nn.SyncBatchNorm(2, **kwargs).double()
        for _ in range(3):
            np.testing.assert_allclose(sync(x).data, bn(x).data, rtol=0, atol=1e-14)
        for key, value in bn.state_dict().items():
            np.testing.assert_allclose(sync.state_dict()[key].data, value.data, atol=1e-15)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode():
    model = get_model("resnet20", num_classes=10)
    model.eval()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    converted = dist.convert_sync_batchnorm(model)
    assert converted is model
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == n_bn == 19
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(p is params[k] for k, p in model.named_parameters())  # same objects
    assert all(b is buffers[k] for k, b in model.named_buffers())
    assert not any(m.training for m in model.modules())
    root = nn.BatchNorm1d(4, eps=1e-3, momentum=0.2)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(root)
    assert isinstance(sync, nn.SyncBatchNorm) and (sync.eps, sync.momentum) == (1e-3, 0.2)


def test_sync_batchnorm_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match="SyncBatchNorm: expected at least 2D input"):
        nn.SyncBatchNorm(3)(mr.randn(3))
    with pytest.raises(ValueError, match="weight has shape \\(4,\\) but the input of shape "
                                         "\\(2, 3\\) has 3 channels"):
        dist.sync_batch_norm(mr.randn(2, 3), None, None, mr.ones(4))
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        nn.SyncBatchNorm(3)(mr.randn(1, 3))


# --------------------------------------------------------------------------- the docs page


def test_docs_page_python_blocks_run_as_a_world_of_one(tmp_path):
    """docs/distributed.md's ```python blocks run with plain `python` (one process)."""
    import os
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "distributed.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", page, re.S | re.M)
    assert len(blocks) >= 2
    script = tmp_path / "blocks.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in dist.group.LAUNCHER_SIZE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "epoch 1: loss" in run.stdout
    for path in re.findall(r"`((?:minires|tests|tutorials|benchmarks|docs)/[A-Za-z0-9_./-]*)`",
                           page):
        assert (root / path).exists(), f"docs/distributed.md names {path}, which is missing"
    assert "distributed.md" in (root / "mkdocs.yml").read_text(encoding="utf-8")
