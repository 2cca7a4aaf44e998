# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 · Data parallelism: one model, several processes
#
# **What you will build.** Training on several processes (or GPUs) at once, each with a
# full copy of the model and its own slice of every batch. First by hand in this one
# process: you will split a batch between two "ranks", average their gradients, and see
# that the average *is* the gradient of the whole batch. Then the all-reduce that does
# the averaging, as the ring algorithm real libraries use, and what it costs. Then the
# one layer that breaks the equality, BatchNorm, and how SyncBatchNorm repairs it with
# two sums. Last, the real thing: two processes started by `mpiexec`, checked against
# one process with twice the batch.
#
# **Which minires files it re-derives.** `minires/distributed/ddp.py`
# (`DistributedDataParallel`: equal start, averaged gradients in buckets),
# `minires/distributed/sync_batchnorm.py` (statistics and gradient sums over all
# ranks), `minires/distributed/sampler.py` (each rank its shard of every epoch) and
# `minires/distributed/group.py` (`init_process_group`, the collectives).

# %%
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import _common  # fast mode, figures, and `import minires` from a source checkout
import matplotlib.pyplot as plt
import numpy as np

import minires as mr
import minires.nn as nn
import minires.nn.functional as F

mr.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Two ranks in one process
#
# Data parallelism rests on one line of algebra. With a loss that is the *mean* over the
# batch, split the batch of `B` images into `R` equal shards of `B / R`:
#
# $$\nabla \frac{1}{B}\sum_{i=1}^{B} \ell_i = \frac{1}{R}\sum_{r=1}^{R} \nabla
# \underbrace{\frac{R}{B}\sum_{i \in r} \ell_i}_{\text{rank } r\text{'s mean loss}}$$
#
# Each rank computes the gradient of its own mean loss; their average is the gradient
# of the whole batch. If every rank then takes the same optimizer step from the same
# weights, the copies stay identical, and the run is the one a single process with the
# whole batch would make, only `R` times less work per process.
#
# Below, two copies of a small network play the two ranks.


# %%
def small_cnn(batchnorm=False):
    layers = [nn.Conv2d(1, 4, 3, padding=1, bias=not batchnorm)]
    layers += [nn.BatchNorm2d(4)] if batchnorm else []
    layers += [nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 7 * 7, 10)]
    return nn.Sequential(*layers).double()


def gradients(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [p.grad.data.copy() for p in model.parameters()]


x = mr.tensor(rng.standard_normal((16, 1, 28, 28)))  # float64: differences are rounding only
y = mr.tensor(rng.integers(0, 10, 16))
model = small_cnn()
big = gradients(model, x, y)
shards = [gradients(model, x[r * 8:(r + 1) * 8], y[r * 8:(r + 1) * 8]) for r in range(2)]
averaged = [(a + b) / 2 for a, b in zip(*shards)]
print("average of the 2 shard gradients equals the big-batch gradient: max difference "
      f"{max(np.abs(a - g).max() for a, g in zip(averaged, big)):.1e}")
alone = max(np.abs(s - g).max() for s, g in zip(shards[0], big))
print(f"while one shard alone is off by {alone:.2f}")

# %% [markdown]
# ## 2. The all-reduce, and what it costs
#
# "Every rank ends with the sum of everyone's array" is an **all-reduce**. Sending every
# array to rank 0 and the sum back would make rank 0's link carry `2 (R - 1) n` values.
# The **ring** algorithm (what NCCL and most MPI libraries use for large arrays) spreads
# the load: cut each array into `R` chunks; in `R - 1` steps of a *reduce-scatter* each
# rank passes a chunk to its right neighbour, which adds its own; after them, rank `r`
# holds the complete sum of one chunk. `R - 1` steps of an *all-gather* pass the
# finished chunks around the ring. Each rank sends `2 (R - 1) / R · n` values: less
# than `2n`, whatever the number of ranks.


# %%
def ring_all_reduce(arrays):
    """Sum ``arrays`` (one per rank) the way a ring does; returns (results, values sent
    by each rank)."""
    R = len(arrays)
    chunks = [np.array_split(a.astype(np.float64), R) for a in arrays]  # [rank][chunk]
    sent = [0] * R
    for step in range(R - 1):  # reduce-scatter: rank r sends chunk (r - step) to r + 1
        outgoing = [(r, (r - step) % R, chunks[r][(r - step) % R].copy()) for r in range(R)]
        for r, c, data in outgoing:
            chunks[(r + 1) % R][c] += data
            sent[r] += data.size
    # now rank r holds the full sum of chunk (r + 1) % R
    for step in range(R - 1):  # all-gather: pass the finished chunks around
        outgoing = [(r, (r + 1 - step) % R, chunks[r][(r + 1 - step) % R].copy())
                    for r in range(R)]
        for r, c, data in outgoing:
            chunks[(r + 1) % R][c] = data
            sent[r] += data.size
    return [np.concatenate(c) for c in chunks], sent


R, n = 4, 1200
arrays = [rng.standard_normal(n) for _ in range(R)]
results, sent = ring_all_reduce(arrays)
print("ring all-reduce == sum:", all(np.allclose(res, sum(arrays)) for res in results),
      f"| each of {R} ranks sent {sent[0] / n:.2f} x n values (2 (R - 1) / R = "
      f"{2 * (R - 1) / R:.2f})")

# %% [markdown]
# A message costs a fixed **latency** `α` (software, network round trip: microseconds)
# plus its size over the **bandwidth** `β` (bytes per second). The ring makes
# `2 (R - 1)` messages of `n / R` values each:
#
# $$ t(n) \approx 2 (R - 1)\,\alpha + 2\,\frac{R - 1}{R}\,\frac{n\ \text{bytes}}{\beta} $$
#
# Small arrays pay the latency, large ones the bandwidth. A ResNet has dozens of
# parameter tensors, many tiny (BatchNorm's weights have 16 to 64 values): one
# all-reduce per tensor would pay the latency dozens of times per step. So
# `DistributedDataParallel` copies the gradients into a few flat **buckets** and
# all-reduces each in one call. The curve below uses round, assumed values of `α` and
# `β` (not measurements); `python benchmarks/bench_distributed.py --sweep-only` measures
# the real curve of your machine.

# %%
alpha, beta = 20e-6, 2e9  # assumed: 20 us per message, 2 GB/s
sizes = np.logspace(2, 8, 61)  # bytes
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for ranks in (2, 8, 64):
    t = 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * sizes / beta
    ax.loglog(sizes, t * 1e3, label=f"{ranks} ranks")
ax.axvline(4 * 2**20, color="grey", ls=":", label="4 MiB: the CPU default bucket")
ax.set(xlabel="all-reduced bytes", ylabel="time (ms, model)",
       title="ring all-reduce: latency-bound, then bandwidth-bound")
ax.legend()
_common.show(fig, "11_allreduce_cost")

params = list(mr.models.get_model("resnet20", num_classes=10).parameters())
n_values = sum(p.numel() for p in params)
per_tensor = sum(2 * alpha + p.numel() * 4 / beta for p in params)
one_bucket = 2 * alpha + n_values * 4 / beta
print(f"ResNet-20: {len(params)} gradient tensors, {n_values} values; with the model above "
      f"(2 ranks): one all-reduce per tensor {per_tensor * 1e3:.2f} ms, one bucket "
      f"{one_bucket * 1e3:.2f} ms")

# %% [markdown]
# Buckets also let communication **overlap** with computation: backward produces the
# gradients of the last layers first, so the bucket holding them can travel while the
# earlier layers are still being differentiated. minires's engine has no hook that says
# "this gradient is final", so `DistributedDataParallel` counts, at the end of forward,
# how many contributions each parameter will receive, and its hooks count them as they
# arrive (the docstring of `minires/distributed/ddp.py` explains the details and the
# two engine hooks that would make it simpler).
#
# ## 3. The layer that needs care: BatchNorm
#
# The equality of section 1 needs each image's loss to depend on that image alone.
# BatchNorm breaks it: it normalises each channel with the mean and variance *of the
# batch*, so with two ranks each normalises with the statistics of its own half.

# %%
bn_model = small_cnn(batchnorm=True)
big = gradients(bn_model, x, y)
shards = [gradients(bn_model, x[r * 8:(r + 1) * 8], y[r * 8:(r + 1) * 8]) for r in range(2)]
averaged = [(a + b) / 2 for a, b in zip(*shards)]
print("with BatchNorm, average of the shard gradients vs big batch: max difference "
      f"{max(np.abs(a - g).max() for a, g in zip(averaged, big)):.2e}")

# %% [markdown]
# `SyncBatchNorm` computes the statistics of the *global* batch. Each rank sends three
# numbers per channel, its count `n_r`, mean `m_r` and sum of squared deviations
# `q_r = Σ (x - m_r)²`, and every rank combines them (the parallel variance formula;
# subtracting `E[x]²` from `E[x²]` instead would lose digits to cancellation):
#
# $$N = \sum_r n_r,\quad \mu = \frac{1}{N}\sum_r n_r m_r,\quad
# \sigma^2 = \frac{1}{N}\Big(\sum_r q_r + \sum_r n_r (m_r - \mu)^2\Big)$$

# %%
h = bn_model[0](x).data  # the conv output that BatchNorm normalises, (16, 4, 28, 28)
stats = []
for r in range(2):
    part = h[r * 8:(r + 1) * 8]
    n_r = part.size // part.shape[1]
    m_r = part.mean(axis=(0, 2, 3))
    q_r = ((part - m_r.reshape(1, -1, 1, 1)) ** 2).sum(axis=(0, 2, 3))
    stats.append((n_r, m_r, q_r))
N = sum(s[0] for s in stats)
mean = sum(s[0] * s[1] for s in stats) / N
var = (sum(s[2] for s in stats) + sum(s[0] * (s[1] - mean) ** 2 for s in stats)) / N
print("combined shard statistics equal the big batch's: mean",
      np.allclose(mean, h.mean(axis=(0, 2, 3))), "| variance",
      np.allclose(var, h.var(axis=(0, 2, 3))))

# %% [markdown]
# The backward pass of BatchNorm (tutorial 06) needs two sums over the batch, `Σ gy`
# and `Σ gy · x̂`; with a global batch they are global sums, so SyncBatchNorm
# all-reduces both in one call:
#
# $$g_x = \frac{w}{\sqrt{\sigma^2 + \epsilon}}\Big(g_y - \frac{1}{N}\sum_{\text{all ranks}}
# g_y - \hat{x}\,\frac{1}{N}\sum_{\text{all ranks}} g_y \hat{x}\Big)$$
#
# The gradients of `w` and `b` stay each rank's own sums: `DistributedDataParallel`
# averages them with the others. The price is two small collectives per BatchNorm layer
# per step (ResNet-20 has 19), each paying the latency: with several images per rank,
# plain BatchNorm on each rank's own batch is often good enough, and cheaper.
#
# ## 4. The real thing: two processes
#
# The script below is what a data-parallel training script looks like with
# `minires.distributed`. `mpiexec -n 2 python script.py` starts two copies; each calls
# `init_process_group()` and learns its rank. `DistributedDataParallel` broadcasts rank
# 0's weights and averages the gradients; `DistributedSampler` gives each rank a
# disjoint shard of every epoch; `convert_sync_batchnorm` turns every BatchNorm into a
# SyncBatchNorm. Without `mpiexec`, the same script is a world of one process.

# %%
SCRIPT = textwrap.dedent('''
    import sys
    import time

    import numpy as np
    import minires as mr
    import minires.distributed as dist
    import minires.nn as nn
    import minires.nn.functional as F
    from minires.data import MNIST, DataLoader, TensorDataset
    from minires.optim import SGD

    global_batch, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    dist.init_process_group()                    # rank and world size from mpiexec
    rank, world = dist.get_rank(), dist.get_world_size()

    mnist = MNIST(sample=True)
    data = TensorDataset(mnist.data[:1024], mnist.targets[:1024])
    sampler = dist.DistributedSampler(data, shuffle=True, seed=0)  # this rank's shard
    loader = DataLoader(data, batch_size=global_batch // world, sampler=sampler)

    mr.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                          nn.Linear(8 * 7 * 7, 10)).double()
    model = dist.convert_sync_batchnorm(model)   # BatchNorm over the global batch
    ddp = dist.DistributedDataParallel(model)    # same start, averaged gradients
    optimizer = SGD(ddp.parameters(), lr=0.1, momentum=0.9)

    done, start = 0, time.perf_counter()
    while done < steps:
        for images, labels in loader:            # this rank's share of each batch
            loss = F.cross_entropy(ddp(images.double()), labels)
            optimizer.zero_grad()
            loss.backward()                      # .grad: the mean over all ranks
            optimizer.step()
            done += 1
            if done == steps:
                break
    seconds = time.perf_counter() - start
    if rank == 0:                                # only rank 0 writes files
        mr.save(model.state_dict(), out)
        print(f"{world} process(es) x batch {global_batch // world}: {steps} steps in "
              f"{seconds:.2f} s, {ddp.comm_seconds / steps * 1e3:.1f} ms/step in all-reduce")
''')

workdir = tempfile.mkdtemp()
script = os.path.join(workdir, "train_ddp.py")
with open(script, "w") as f:
    f.write(SCRIPT)
env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join(filter(None, [_common._ROOT, os.environ.get("PYTHONPATH")])))
steps = _common.pick(30, 6)
mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
except ImportError:
    mpiexec = None

one = subprocess.run([sys.executable, script, "64", str(steps), os.path.join(workdir, "one.mr")],
                     env=env, capture_output=True, text=True, timeout=600)
print(one.stdout.strip() or one.stderr[-2000:])
if mpiexec is None:
    print("2-process run: skipped, mpi4py or mpiexec is missing "
          "(pip install 'minires[distributed]' installs both)")
else:
    two = subprocess.run([mpiexec, "-n", "2", sys.executable, script, "64", str(steps),
                          os.path.join(workdir, "two.mr")],
                         env=env, capture_output=True, text=True, timeout=600)
    print(two.stdout.strip() or two.stderr[-2000:])
    a, b = mr.load(os.path.join(workdir, "one.mr")), mr.load(os.path.join(workdir, "two.mr"))
    difference = max(float(np.abs(a[k].data - b[k].data).max()) for k in a)
    print(f"2-process run: 2 processes x 32 vs 1 process x 64, after {steps} SGD steps with "
          f"SyncBatchNorm: largest difference in any weight or running statistic "
          f"{difference:.1e}")

# %% [markdown]
# The two runs agree up to rounding in the last digits of float64: the 2-process run
# *is* the 1-process run with the batch split in two. (The timings printed above are of this
# machine at this moment; on a shared machine they are noise, and on two cores a
# second process also competes with the first for them.)
#
# What the script does not show: on several machines, the same script starts with a
# host file (`mpiexec -f hosts -n 8 python train_ddp.py`); on GPUs, each process takes
# the GPU of its local rank and the gradients travel over NCCL instead of MPI
# (docs/distributed.md). And for throughput on a CPU, compare 1 process with 2 threads
# against 2 processes with 1 thread each: `python benchmarks/bench_distributed.py`. On an
# idle 2-core machine it measured, for ResNet-20 at a global batch of 128:
#
# | run | processes x threads | images/s | all-reduce ms per step |
# |---|---|---:|---:|
# | one process | 1 x 2 | 142 | - |
# | DistributedDataParallel, all-reduce overlapped with backward | 2 x 1 | 186 | 17.2 |
# | DistributedDataParallel, all-reduce after backward | 2 x 1 | 194 | 29.0 |
#
# Two processes win because one process leaves a core idle during NumPy's one-threaded
# copies; the overlap does not pay on two cores, where the early all-reduce competes with
# backward for the same cores (docs/distributed.md, "What it costs on a CPU").
#
# The `minires train` command does all of this for you, and what a real run needs
# besides: `mpiexec -n 2 minires train --sync-bn ...` (or `minires train --nproc 2
# --sync-bn ...`) splits each global batch of `--batch-size` among the processes, with
# its augmentation drawn for the whole batch so that every image is cropped as in one
# process; rank 0 alone writes; a Ctrl-C that reaches one process stops all of them
# after the same step; the checkpoint resumes on any number of processes; and the test
# set is evaluated in shards. `minires/train/parallel.py` says where the processes
# agree, and what each agreement costs.
#
# ## Exercises
#
# 1. Make the loss a *sum* over the batch instead of a mean. What should
#    `DistributedDataParallel` do with the gradients then: average or add? Check your
#    answer with section 1.
# 2. Replace `convert_sync_batchnorm` in the script by nothing (plain BatchNorm on each
#    rank). How large does the difference from the 1-process run get after 30 steps?
# 3. Implement the all-reduce as *recursive doubling* (rank `r` exchanges with
#    `r XOR 1`, then `r XOR 2`, ...) for `R` a power of two. Count the messages and the
#    values each rank sends; when does it beat the ring?
# 4. Gradient accumulation: with `with ddp.no_sync():` around the first of two
#    backward passes, show that 2 processes x 2 micro-batches of 16 equal 1 process
#    with batch 64.
# 5. Run `python benchmarks/bench_distributed.py` on an idle machine with several cores.
#    Where does 2 processes x 1 thread beat 1 process x 2 threads, and why (think of
#    what NumPy parallelises and what it does not)?
