"""The checks of minires.distributed that need several processes.

tests/test_distributed_mpi.py runs this file as ``mpiexec -n 2 python
tests/distributed_worker.py OUT.json``. Each ``check_*`` runs on every rank, in order,
and returns a JSON-able dict of what this rank saw; rank 0 writes
``{check name: [rank 0's dict, rank 1's dict, ...]}`` to OUT.json, and the tests assert
on it. Errors are not caught (except the ones a check provokes on purpose): one rank's
exception ends every rank through the abort hook of init_process_group.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import minires as mr
import minires.distributed as dist
import minires.nn as nn
import minires.nn.functional as F
from minires.data import DataLoader, TensorDataset
from minires.distributed import DistributedDataParallel, DistributedSampler
from minires.optim import SGD

STEPS = 10  # SGD steps of the equivalence checks
GLOBAL_BATCH = 128


def max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def weights(model) -> dict:
    return {k: v.data.copy() for k, v in model.state_dict().items()}


def max_state_diff(a: dict, b: dict) -> float:
    assert list(a) == list(b), (list(a), list(b))
    return max(max_diff(a[k], b[k]) for k in a)


def across_ranks(array) -> float:
    """The largest difference between this array on any rank and on rank 0."""
    gathered = dist.default_group().all_gather(np.ascontiguousarray(array))
    return max(max_diff(g, gathered[0]) for g in gathered)


# --------------------------------------------------------------------------- models, data


def plain_net() -> nn.Module:
    """A small CNN without BatchNorm, float64."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).double()


def bn_net() -> nn.Module:
    """The same with BatchNorm2d and BatchNorm1d, float64."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 6),
                         nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 5)).double()


def dataset(n: int = 640) -> TensorDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return TensorDataset(images, rng.integers(0, 5, n))


def train(model, loader, steps: int) -> None:
    """``steps`` SGD steps (momentum, weight decay) over as many epochs as needed."""
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    done = 0
    while done < steps:
        for images, labels in loader:
            loss = F.cross_entropy(model(images.double()), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                return


def one_rank_reference(make_model, data) -> dict:
    """What one process with the whole global batch computes (same init, same order)."""
    mr.manual_seed(0)
    model = make_model()
    sampler = DistributedSampler(data, num_replicas=1, rank=0, seed=3)
    train(model, DataLoader(data, batch_size=GLOBAL_BATCH, sampler=sampler), STEPS)
    return weights(model)


def data_parallel(make_model, data, sync_bn: bool) -> dict:
    mr.manual_seed(0)
    model = make_model()
    if sync_bn:
        model = dist.convert_sync_batchnorm(model)
    ddp = DistributedDataParallel(model)
    sampler = DistributedSampler(data, seed=3)
    per_rank = GLOBAL_BATCH // dist.get_world_size()
    train(ddp, DataLoader(data, batch_size=per_rank, sampler=sampler), STEPS)
    return weights(model)


# --------------------------------------------------------------------------- checks


def check_uninitialized_under_mpiexec():
    try:
        dist.get_rank()
    except RuntimeError as error:
        return {"error": str(error)}
    return {"error": None}


def check_world():
    return {"rank": dist.get_rank(), "size": dist.get_world_size(),
            "local_rank": dist.get_local_rank(), "initialized": dist.is_initialized(),
            "backend": dist.default_group().backend}


def check_collectives():
    rank = dist.get_rank()
    out = {}
    base = np.arange(6, dtype=np.float64).reshape(2, 3) + 10 * rank
    for op in ("sum", "mean", "max", "min"):
        out[op] = dist.all_reduce(base.copy(), op).tolist()
    t = mr.tensor(base.astype(np.float32))
    dist.all_reduce(t, dist.ReduceOp.AVG)
    out["tensor_mean"] = t.tolist()
    out["tensor_dtype"] = str(t.dtype)
    parent = np.zeros((2, 6)) + rank + 1
    dist.all_reduce(parent[:, ::2])  # a strided view: reduced through a copy, written back
    out["strided_parent"] = parent.tolist()
    ints = np.array([rank + 1, 7], dtype=np.int64)
    out["int_sum"] = dist.all_reduce(ints).tolist()
    try:
        dist.all_reduce(np.array([1, 2]), "mean")
        out["int_mean_error"] = None
    except TypeError as error:
        out["int_mean_error"] = str(error)
    out["broadcast_from_1"] = dist.broadcast(np.full(3, float(rank)), src=1).tolist()
    gathered = dist.all_gather([], mr.tensor([rank, rank * 2.0]))
    out["all_gather_tensors"] = [g.tolist() for g in gathered]
    out["all_gather_kinds"] = [type(g).__name__ for g in gathered]
    into = [np.zeros(2) for _ in range(dist.get_world_size())]
    dist.all_gather(into, np.array([rank, -rank], dtype=np.float64))
    out["all_gather_into"] = [a.tolist() for a in into]
    objects = []
    dist.all_gather_object(objects, {"rank": rank, "name": f"r{rank}"})
    out["all_gather_object"] = objects
    box = [rank * 100, "from rank %d" % rank]
    dist.broadcast_object_list(box, src=1)
    out["broadcast_object_list"] = box
    dist.barrier()
    return out


def check_broadcast_at_construction():
    mr.manual_seed(dist.get_rank())  # different initial weights on each rank
    model = bn_net()
    model[1].running_mean.data[...] = dist.get_rank()
    before = max(across_ranks(p.data) for p in model.parameters())
    DistributedDataParallel(model)
    after = max(across_ranks(t.data) for t in list(model.parameters()) + list(model.buffers()))
    return {"before": before, "after": after}


def check_buffers_broadcast_each_forward():
    mr.manual_seed(0)
    model = bn_net()
    ddp = DistributedDataParallel(model)
    ddp.eval()  # eval: forward reads the running statistics and does not change them
    model[1].running_mean.data[...] = 1.0 + dist.get_rank()
    ddp(mr.randn(4, 3, 8, 8, dtype=mr.float64))
    return {"running_mean": model[1].running_mean.tolist()}


def check_ddp_gradients_are_the_allreduced_mean():
    rank = dist.get_rank()
    results = {}
    for label, cap, overlap in (("one bucket, overlap", None, True),
                                ("tiny buckets, overlap", 1e-4, True),
                                ("tiny buckets, after backward", 1e-4, False)):
        mr.manual_seed(0)
        model, twin = plain_net(), plain_net()
        ddp = DistributedDataParallel(model, bucket_cap_mb=cap, overlap=overlap)
        twin.load_state_dict(model.state_dict())
        rng = np.random.default_rng(100 + rank)  # every rank its own data
        x = mr.tensor(rng.standard_normal((6, 3, 8, 8)))
        y = mr.tensor(rng.integers(0, 5, 6))
        calls = ddp.comm_calls
        F.cross_entropy(ddp(x), y).backward()
        F.cross_entropy(twin(x), y).backward()
        errors, local_differs = [], []
        for p, q in zip(model.parameters(), twin.parameters()):
            local = q.grad.data.copy()
            local_differs.append(across_ranks(local))
            dist.all_reduce(local, "mean")
            errors.append(max_diff(p.grad.data, local))
        results[label] = {"max_error": max(errors), "buckets": len(ddp.bucket_sizes),
                          "allreduce_calls": ddp.comm_calls - calls,
                          "parameters": len(list(model.parameters())),
                          "local_grads_differ_by": max(local_differs),
                          "ddp_grads_differ_across_ranks": max(across_ranks(p.grad.data)
                                                               for p in model.parameters())}
    return results


def check_no_sync_accumulates():
    rank = dist.get_rank()
    mr.manual_seed(0)
    model, twin = plain_net(), plain_net()
    ddp = DistributedDataParallel(model)
    twin.load_state_dict(model.state_dict())
    rng = np.random.default_rng(200 + rank)
    batches = [(mr.tensor(rng.standard_normal((4, 3, 8, 8))), mr.tensor(rng.integers(0, 5, 4)))
               for _ in range(3)]
    with ddp.no_sync():
        for x, y in batches[:2]:
            F.cross_entropy(ddp(x), y).backward()
    calls_inside = ddp.comm_calls
    local_after_no_sync = max(across_ranks(p.grad.data) for p in model.parameters())
    x, y = batches[2]
    F.cross_entropy(ddp(x), y).backward()
    for x, y in batches:
        F.cross_entropy(twin(x), y).backward()
    errors = []
    for p, q in zip(model.parameters(), twin.parameters()):
        expected = dist.all_reduce(q.grad.data.copy(), "mean")
        errors.append(max_diff(p.grad.data, expected))
    return {"calls_inside_no_sync": calls_inside, "calls_after": ddp.comm_calls,
            "grads_differ_across_ranks_inside": local_after_no_sync, "max_error": max(errors)}


def check_two_ranks_equal_one_rank_big_batch():
    data = dataset()
    reference = one_rank_reference(plain_net, data)
    ours = data_parallel(plain_net, data, sync_bn=False)
    return {"max_weight_diff": max_state_diff(ours, reference),
            "ranks_differ_by": max(across_ranks(v) for v in ours.values()),
            "weights_moved": max_state_diff(reference, weights(_initial(plain_net)))}


def check_sync_batchnorm_equals_batchnorm_big_batch():
    data = dataset()
    reference = one_rank_reference(bn_net, data)
    ours = data_parallel(bn_net, data, sync_bn=True)
    plain_bn = data_parallel(bn_net, data, sync_bn=False)
    return {"max_state_diff": max_state_diff(ours, reference),
            "running_var_diff": max_diff(ours["1.running_var"], reference["1.running_var"]),
            "batches_tracked": int(ours["1.num_batches_tracked"]),
            "plain_batchnorm_diff": max_state_diff(plain_bn, reference),
            "ranks_differ_by": max(across_ranks(v) for v in ours.values())}


def _initial(make_model):
    mr.manual_seed(0)
    return make_model()


def check_sync_batchnorm_gradcheck():
    """Finite differences of the GLOBAL loss sum_r sum(u_r * y_r) against the gradients of
    SyncBatchNorm's hand-written backward, across the ranks. Every rank holds the whole
    global input and perturbs the same coordinate at the same time."""
    R, r = dist.get_world_size(), dist.get_rank()
    n = 3  # samples per rank
    rng = np.random.default_rng(7)
    X = rng.standard_normal((R * n, 2, 3, 2))
    U = rng.standard_normal(X.shape)  # random upstream gradient, never all ones
    w0, b0 = rng.standard_normal(2), rng.standard_normal(2)
    mine = slice(r * n, (r + 1) * n)

    def global_loss(X, w, b) -> float:
        with mr.no_grad():
            y = dist.sync_batch_norm(mr.tensor(X[mine]), None, None, mr.tensor(w), mr.tensor(b))
        return float(dist.all_reduce(np.array([(y.data * U[mine]).sum()]))[0])

    x = mr.tensor(X[mine], requires_grad=True)
    w, b = mr.tensor(w0, requires_grad=True), mr.tensor(b0, requires_grad=True)
    dist.sync_batch_norm(x, None, None, w, b).backward(U[mine])
    analytic = {"x": dist.default_group().all_gather(x.grad.data).reshape(X.shape),
                "w": dist.all_reduce(w.grad.data.copy()),  # the global loss sums the ranks'
                "b": dist.all_reduce(b.grad.data.copy())}
    eps, worst = 1e-6, {}
    for name, value in (("x", X), ("w", w0), ("b", b0)):
        numeric = np.empty(value.size)
        flat = value.reshape(-1)
        for i in range(value.size):
            original = flat[i]
            flat[i] = original + eps
            plus = global_loss(X, w0, b0)
            flat[i] = original - eps
            minus = global_loss(X, w0, b0)
            flat[i] = original
            numeric[i] = (plus - minus) / (2 * eps)
        a = analytic[name].reshape(-1)
        # how far past the tolerance atol + rtol * |numeric| (negative: within it)
        worst[name] = float(np.max(np.abs(a - numeric) - (1e-8 + 1e-6 * np.abs(numeric))))
    return {"worst_excess": worst, "x_grad_norm": float(np.linalg.norm(analytic["x"]))}


def check_model_mismatch_is_detected():
    rank = dist.get_rank()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2 + rank))
    try:
        DistributedDataParallel(model)
    except RuntimeError as error:
        shape_error = str(error)
    else:
        shape_error = None
    try:
        DistributedDataParallel(nn.Linear(3, 3), bucket_cap_mb=1.0 + rank)
    except RuntimeError as error:
        settings_error = str(error)
    else:
        settings_error = None
    return {"shape_error": shape_error, "settings_error": settings_error}


def check_sampler_settings_mismatch_is_detected():
    try:
        DistributedSampler(100, seed=dist.get_rank())
    except RuntimeError as error:
        return {"error": str(error)}
    return {"error": None}


def check_sampler_shards():
    out = {}
    for drop_last in (False, True):
        sampler = DistributedSampler(11, shuffle=True, seed=5, drop_last=drop_last)
        out[f"drop_last={drop_last}"] = {"order": sampler.order(2).tolist(),
                                         "len": len(sampler),
                                         "global": sampler.global_order(2).tolist()}
    return out


CHECKS = [check_world, check_collectives, check_broadcast_at_construction,
          check_buffers_broadcast_each_forward, check_ddp_gradients_are_the_allreduced_mean,
          check_no_sync_accumulates, check_two_ranks_equal_one_rank_big_batch,
          check_sync_batchnorm_equals_batchnorm_big_batch, check_sync_batchnorm_gradcheck,
          check_model_mismatch_is_detected, check_sampler_settings_mismatch_is_detected,
          check_sampler_shards]


def main() -> None:
    out_path = sys.argv[1]
    results = {"uninitialized_under_mpiexec": check_uninitialized_under_mpiexec()}
    dist.init_process_group()
    for check in CHECKS:
        results[check.__name__[len("check_"):]] = check()
    gathered = []
    dist.all_gather_object(gathered, results)
    if dist.get_rank() == 0:
        merged = {name: [ranks[name] for ranks in gathered] for name in results}
        tmp = out_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(merged, f, indent=1)
        os.replace(tmp, out_path)  # the test never reads a half-written file
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
