"""Data parallelism on the CPU: ResNet-20 training steps with 1 process x 2 threads versus
2 MPI processes x 1 thread each (DistributedDataParallel), and what an all-reduce costs.

    python benchmarks/bench_distributed.py [--batch-size 128] [--steps 10] [--warmup 2]
                                           [--cli-steps 4]
    python benchmarks/bench_distributed.py --sweep-only     # the all-reduce table alone

Both runs train on the same global batch (128 = 1 x 128 = 2 x 64), so images/s compare
directly. The 2-process runs use DistributedDataParallel with its default buckets,
once overlapping the all-reduce with backward and once after it; "all-reduce ms/step"
is the time the host spent starting and waiting for gradient all-reduces
(``ddp.comm_seconds``). PyTorch runs the same network (benchmarks/bench_resnet_cpu.py)
in one process and with its own DistributedDataParallel over gloo, for reference.

The second table runs the whole ``minires train`` command (loader, augmentation, the
loop with its agreed stop flag and combined sums, evaluation, files) on the CIFAR-10
sample for one epoch of ``--cli-steps`` global batches: 1 process x 2 threads against
``--nproc 2`` (2 x 1). Its images/s are the training steps' (from metrics.jsonl, first
step included: no warm-up), so they sit a little below the first table's.

The third table times ``Allreduce`` of float32 arrays of growing size between 2
processes: the fixed cost of a call against the bandwidth, which is how the default
bucket size of DistributedDataParallel was chosen.

Each configuration runs in its own processes (started by this script with ``mpiexec``),
with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set before NumPy and PyTorch start. Run it
on an otherwise idle machine: on a shared one the numbers are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --------------------------------------------------------------------------- workers


def worker_minires(args) -> dict:
    import minires as mr
    import minires.distributed as dist
    import minires.nn.functional as F
    from minires.models import get_model
    from minires.optim import SGD

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    per_rank = args.batch_size // world
    rng = np.random.default_rng(rank)
    x = mr.tensor(rng.standard_normal((per_rank, 3, 32, 32)).astype(np.float32))
    y = mr.tensor(rng.integers(0, 10, per_rank))
    mr.manual_seed(0)
    model = get_model(args.model, num_classes=10)
    ddp = dist.DistributedDataParallel(model, overlap=args.overlap) if world > 1 else model
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step():
        loss = F.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    comm_before = getattr(ddp, "comm_seconds", 0.0)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    dist.barrier()
    seconds = time.perf_counter() - start
    comm = (getattr(ddp, "comm_seconds", 0.0) - comm_before) / args.steps
    comm = dist.all_reduce(np.array([comm]), "max")[0]  # the slowest rank's
    return {"seconds_per_step": seconds / args.steps, "allreduce_seconds_per_step": comm,
            "rank": rank, "world": world,
            "buckets": len(ddp.bucket_sizes) if world > 1 else 0}


def worker_torch(args) -> dict:
    import torch
    import torch.distributed as tdist
    from bench_resnet_cpu import torch_cifar_resnet

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    world = int(os.environ.get("PMI_SIZE", "1"))
    rank = int(os.environ.get("PMI_RANK", "0"))
    if world > 1:
        tdist.init_process_group("gloo", init_method=f"file://{args.store}", rank=rank,
                                 world_size=world)
    per_rank = args.batch_size // world
    rng = np.random.default_rng(rank)
    x = torch.from_numpy(rng.standard_normal((per_rank, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, per_rank))
    torch.manual_seed(0)
    depth = int(args.model.replace("resnet", ""))
    model = torch_cifar_resnet(depth)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if world > 1:
        tdist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world > 1:
        tdist.barrier()
        tdist.destroy_process_group()
    seconds = time.perf_counter() - start
    return {"seconds_per_step": seconds / args.steps, "allreduce_seconds_per_step": None,
            "rank": rank, "world": world}


def worker_sweep(args) -> dict:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    for kib in (4, 16, 64, 256, 1024, 4096, 16384):
        a = np.ones(kib * 1024 // 4, np.float32)
        repeats = max(5, min(200, 20000 // kib))
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, a)
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(repeats):
            comm.Allreduce(MPI.IN_PLACE, a)
        seconds = comm.allreduce((time.perf_counter() - start) / repeats, op=MPI.MAX)
        rows.append({"kib": kib, "seconds": seconds})
    return {"rows": rows, "rank": comm.Get_rank(), "world": comm.Get_size()}


# --------------------------------------------------------------------------- launcher


def launch(kind: str, procs: int, threads: int, args, extra=()) -> dict | None:
    """Run this file as a worker in ``procs`` processes of ``threads`` threads each;
    returns rank 0's result (None, with the reason printed, if it failed)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, HERE, env.get("PYTHONPATH")]))
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--model", args.model, *extra]
    if procs > 1:
        mpiexec = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
                   or shutil.which("mpiexec"))
        if mpiexec is None:
            print(f"  ({kind} x{procs}: mpiexec not found; pip install 'minires[distributed]')")
            return None
        command = [mpiexec, "-n", str(procs)] + command
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    results = [json.loads(line[len("RESULT "):]) for line in run.stdout.splitlines()
               if line.startswith("RESULT ")]
    if run.returncode != 0 or not results:
        print(f"  ({kind} {procs}x{threads} failed: {run.stderr.strip()[-500:]})")
        return None
    return results[0]


def print_training_table(args) -> None:
    print(f"{args.model} training steps on the CPU: global batch {args.batch_size} (float32), "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print("| run | processes x threads | images/s | ms/step | all-reduce ms/step |")
    print("|---|---|---|---|---|")
    rows = [("minires", "minires", 1, 2, ()),
            ("minires DDP, overlapped", "minires", 2, 1, ("--overlap", "1")),
            ("minires DDP, after backward", "minires", 2, 1, ("--overlap", "0"))]
    try:
        import torch  # noqa: F401
        store = os.path.join(tempfile.mkdtemp(), "store")
        rows += [("PyTorch", "torch", 1, 2, ()),
                 ("PyTorch DDP (gloo)", "torch", 2, 1, ("--store", store))]
    except ImportError:
        print("(PyTorch is not installed: no reference rows)")
    for label, kind, procs, threads, extra in rows:
        r = launch(kind, procs, threads, args, extra)
        if r is None:
            continue
        comm = r["allreduce_seconds_per_step"]
        comm_text = "-" if comm is None or procs == 1 else f"{comm * 1e3:.1f}"
        print(f"| {label} | {procs} x {threads} | {args.batch_size / r['seconds_per_step']:.0f} "
              f"| {r['seconds_per_step'] * 1e3:.0f} | {comm_text} |", flush=True)


def train_command(procs: int, threads: int, args) -> dict | None:
    """One epoch of ``minires train`` on ``procs`` processes -> its metrics row (None,
    with the reason printed, if it failed)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    out = tempfile.mkdtemp()
    command = [sys.executable, "-m", "minires", "train", "--model", args.model, "--dataset",
               "cifar10-sample", "--limit-train", str(args.batch_size * args.cli_steps),
               "--batch-size", str(args.batch_size), "--epochs", "1", "--no-progress",
               "--out", out] + (["--nproc", str(procs)] if procs > 1 else [])
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    metrics = os.path.join(out, "metrics.jsonl")
    if run.returncode != 0 or not os.path.exists(metrics):
        print(f"  (minires train {procs}x{threads} failed: {run.stderr.strip()[-500:]})")
        return None
    with open(metrics) as f:
        return json.loads(f.readline())


def print_command_table(args) -> None:
    print(f"\nminires train (the whole command): {args.model} on the CIFAR-10 sample, global "
          f"batch {args.batch_size}, one epoch of {args.cli_steps} steps")
    print("| run | processes x threads | images/s (training steps) | seconds of training |")
    print("|---|---|---|---|")
    for label, procs, threads in (("minires train", 1, 2),
                                  ("minires train --nproc 2", 2, 1)):
        row = train_command(procs, threads, args)
        if row is not None:
            print(f"| {label} | {procs} x {threads} | {row['images_per_s']:.0f} | "
                  f"{row['seconds']:.1f} |", flush=True)


def print_sweep_table(args) -> None:
    r = launch("sweep", 2, 1, args)
    if r is None:
        return
    print("\nAllreduce (sum, in place) of float32 arrays between 2 processes on this machine")
    print("| size | time per call | MB/s (size / time) |")
    print("|---|---|---|")
    for row in r["rows"]:
        size = f"{row['kib'] // 1024} MiB" if row["kib"] >= 1024 else f"{row['kib']} KiB"
        mbps = row["kib"] * 1024 / row["seconds"] / 1e6
        print(f"| {size} | {row['seconds'] * 1e6:.0f} us | {mbps:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--cli-steps", type=int, default=4,
                        help="steps of the minires train rows (0: leave them out)")
    parser.add_argument("--sweep-only", action="store_true")
    parser.add_argument("--worker", choices=["minires", "torch", "sweep"], help=argparse.SUPPRESS)
    parser.add_argument("--overlap", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.overlap = bool(args.overlap)
    if args.worker is not None:
        work = {"minires": worker_minires, "torch": worker_torch, "sweep": worker_sweep}
        result = work[args.worker](args)
        if result["rank"] == 0:  # one line: mpiexec would interleave two ranks' output
            print("RESULT " + json.dumps(result), flush=True)
        return
    if args.batch_size % 2:
        parser.error("--batch-size must be even: it is split between 2 processes")
    if not args.sweep_only:
        print_training_table(args)
        if args.cli_steps > 0:
            print_command_table(args)
    print_sweep_table(args)


if __name__ == "__main__":
    main()
