"""DistributedDataParallel: the same model on every rank, gradients averaged in buckets.

Data parallelism in one paragraph: every rank holds a full copy of the model and
computes the loss on its own slice of the global batch. If each rank's loss is the mean
over its slice, the gradient of the global batch's mean loss is the mean of the ranks'
gradients, so after one all-reduce (sum, then divide by the number of ranks) every
rank holds the gradient a single process would have computed on the whole batch, and
the identical optimizer steps keep the copies identical. That needs three things, which
this wrapper does:

1. the copies start equal: rank 0's parameters and buffers are broadcast at
   construction, after a check that every rank built the same model;
2. the gradients are averaged after every backward, in *buckets*: the gradients are
   copied into a few large flat arrays and each is all-reduced in one call, because one
   call per tensor would pay the latency of a collective hundreds of times per step;
3. buffers that forward changes (BatchNorm's running statistics, computed from each
   rank's own data) are broadcast from rank 0 before each forward, as PyTorch does with
   ``broadcast_buffers=True``. (``SyncBatchNorm`` makes them equal by itself.)

When is a gradient complete?
----------------------------
A bucket can be sent as soon as all its gradients are final, while backward computes
the rest: that overlap hides communication behind computation. PyTorch knows a
gradient is final from a hook its engine calls once per leaf after accumulating it,
and it finishes the last buckets in a callback the engine runs when backward ends.
minires's engine has neither: a leaf hook (``Tensor.register_hook`` on a leaf) runs
once per *contribution*, before it is added to ``.grad``, and nothing runs at the end.
So at the end of each forward this wrapper walks the graph from the outputs and counts,
for every parameter, the edges through which a gradient will arrive; the hook counts
arrivals, and the last one makes the gradient final (``.grad`` plus this contribution).
When the last gradient of the whole model arrives, every bucket is reduced and the
averaged gradients are written to ``.grad``. The engine adds the hook's returned value
to ``.grad`` after the hook, so for that one parameter ``.grad`` is cleared and the
average returned instead.

Two engine hooks would make this simpler and safer: a per-leaf hook called once with
the final gradient of the backward (PyTorch's
``Tensor.register_post_accumulate_grad_hook``), and a callback at the end of backward
(``Variable._execution_engine.queue_callback``). With them, no graph walk is needed,
and a gradient that never arrives (an output left out of the loss) would be noticed in
the same backward instead of at the next forward.

What counting implies (the errors name the parameter): every parameter used in forward
must reach the loss through the outputs, and be used nowhere else in the loss (weight
decay belongs in the optimizer); one forward, one backward. The graph must have the
same shape on every rank, so that the collectives are issued in the same order.
"""

from __future__ import annotations

import contextlib
import time
import weakref

from .. import backend
from ..autograd import is_grad_enabled, no_grad
from ..nn.module import Module
from ..tensors import Tensor
from . import group as _group

# The default size of a bucket, in MiB (bucket_cap_mb=None picks it by device).
# CPU: from the all-reduce sweep of benchmarks/bench_distributed.py
# (``python benchmarks/bench_distributed.py --sweep-only``: 2 MPICH processes on one
# machine). On an idle 2-core machine a call of 4 KiB took 8 us, and the bandwidth grew
# with the size up to 4 MiB (1 MiB: 1.7 GB/s, 4 MiB: 3.0 GB/s, 16 MiB: 2.5 GB/s).
# 4 MiB buckets get the best of it and still give a ResNet-50 (about
# 100 MiB of float32 gradients) some 25 buckets to overlap with backward; ResNet-20's
# 1.1 MiB fits in one. Re-measure on the machine you train on.
# CUDA: PyTorch's 25 MiB, tuned for NCCL, whose GPU-to-GPU bandwidth is tens of times a
# CPU's and needs larger messages to reach it (not measured here: no GPU).
DEFAULT_BUCKET_CAP_MB = {"cpu": 4.0, "cuda": 25.0}


class _Bucket:
    """Parameters whose gradients travel in one flat array (one dtype, one device)."""

    def __init__(self, indices: list, params: list):
        self.indices = indices
        self.slices = {}  # parameter index -> (start, stop, shape)
        start = 0
        for i in indices:
            n = params[i].numel()
            self.slices[i] = (start, start + n, params[i].shape)
            start += n
        self.numel = start
        self.dtype = params[indices[0]].dtype


class _Reduction:
    """The bookkeeping of one synchronised forward and its backward."""

    def __init__(self, expected: list, buckets: list, params: list):
        self.expected = expected
        self.arrived = [0] * len(expected)
        self.remaining = sum(1 for e in expected if e > 0)
        self.pending = [len(b.indices) for b in buckets]  # gradients a bucket still lacks
        self.flats = [backend.array_module(params[b.indices[0]].data).empty(b.numel, b.dtype)
                      for b in buckets]
        self.works = []
        self.launched = 0  # buckets are launched in order: the same order on every rank
        self.finished = False  # every gradient averaged; kept to catch a second backward


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training (PyTorch's name and main arguments).

    ``ddp = DistributedDataParallel(model)``; ``ddp(x)`` runs ``model(x)``; after
    ``loss.backward()`` every parameter's ``.grad`` is the mean over all ranks; the
    wrapped model is ``ddp.module``. Build the optimizer on ``ddp.parameters()`` (the
    same Parameter objects as ``model.parameters()``).

    * ``broadcast_buffers``: broadcast rank 0's buffers before each forward in grad mode.
    * ``bucket_cap_mb``: the largest bucket, in MiB; None picks ``DEFAULT_BUCKET_CAP_MB``
      for the parameters' device.
    * ``overlap``: start each bucket's all-reduce as soon as its gradients are complete,
      during backward (asynchronous MPI or NCCL); False reduces every bucket after the
      last gradient. Both give the same numbers.
    * ``process_group``: default: the one of ``init_process_group`` (or a world of one).

    ``comm_seconds`` and ``comm_calls`` add up the time the host spent in gradient
    all-reduces (starting them and waiting for them) and how many were made.
    """

    def __init__(self, module: Module, broadcast_buffers: bool = True,
                 bucket_cap_mb: float | None = None, overlap: bool = True,
                 process_group=None):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got "
                            f"{type(module).__name__}")
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("DistributedDataParallel: the module has no parameter that "
                             "requires a gradient; there is nothing to synchronise")
        for name, p in named:
            owner = getattr(p, "_ddp_owner", None)
            if owner is not None and owner() is not None:
                raise RuntimeError(f"DistributedDataParallel: parameter {name!r} already "
                                   "belongs to another DistributedDataParallel (its hooks "
                                   "stay on the parameters); wrap each model once")
        self.module = module
        self.process_group = process_group or _group.default_group()
        self.broadcast_buffers, self.overlap = bool(broadcast_buffers), bool(overlap)
        device = named[0][1].device
        if bucket_cap_mb is None:
            bucket_cap_mb = DEFAULT_BUCKET_CAP_MB[device]
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, "
                             f"got {bucket_cap_mb}")
        self.bucket_cap_mb = float(bucket_cap_mb)
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
        self._check_same_model()
        self._broadcast_state()
        self._buckets = self._make_buckets()
        self._bucket_of = {i: k for k, b in enumerate(self._buckets) for i in b.indices}
        self._index = {id(p): i for i, p in enumerate(self._params)}
        self._sync = True
        self._reduction = None
        self.comm_seconds, self.comm_calls = 0.0, 0
        for i, p in enumerate(self._params):
            p._ddp_owner = weakref.ref(self)
            p.register_hook(self._make_hook(i))

    # ----------------------------------------------------------------- construction
    def _check_same_model(self) -> None:
        """Same parameter names, shapes, dtypes and devices, same buffers, same settings
        on every rank: else the buckets would differ and the all-reduces mix up values."""
        if self.process_group.size == 1:
            return
        signature = {}
        for name, p in self.module.named_parameters():
            signature[f"parameter {name!r}"] = {
                "shape": list(p.shape), "dtype": str(p.dtype), "device": p.device,
                "requires_grad": p.requires_grad}
        for name, b in self.module.named_buffers():
            signature[f"buffer {name!r}"] = {"shape": list(b.shape), "dtype": str(b.dtype),
                                             "device": b.device}
        signature["settings"] = {"broadcast_buffers": self.broadcast_buffers,
                                 "bucket_cap_mb": self.bucket_cap_mb, "overlap": self.overlap}
        values = self.process_group.all_gather_object(signature)
        for rank, other in enumerate(values):
            difference = _group.first_difference(values[0], other)
            if difference is not None:
                path, ours, theirs = difference
                raise RuntimeError(
                    f"DistributedDataParallel: the model on rank {rank} differs from rank "
                    f"0's at {path}: {theirs} on rank {rank}, {ours} on rank 0. Every rank "
                    "must build the same model with the same settings.")

    def _broadcast_state(self) -> None:
        """Rank 0's parameters and buffers to every rank (one broadcast per dtype)."""
        tensors = list(self.module.parameters()) + list(self.module.buffers())
        _broadcast_coalesced(self.process_group, tensors)

    def _make_buckets(self) -> list:
        """Buckets in reverse order of the parameters: backward produces the gradients of
        the last layers first, so the first bucket fills first (PyTorch does the same)."""
        cap = self.bucket_cap_mb * 2**20
        buckets, current, size, key = [], [], 0, None
        for i in reversed(range(len(self._params))):
            p = self._params[i]
            nbytes = p.numel() * p.dtype.itemsize
            p_key = (p.dtype, p.device)
            if current and (p_key != key or size + nbytes > cap):
                buckets.append(_Bucket(current, self._params))
                current, size = [], 0
            current.append(i)
            size += nbytes
            key = p_key
        buckets.append(_Bucket(current, self._params))
        return buckets

    @property
    def bucket_sizes(self) -> list:
        """The number of gradient values in each bucket, in launch order."""
        return [b.numel for b in self._buckets]

    # ----------------------------------------------------------------- forward
    def forward(self, *args, **kwargs):
        self._check_previous_reduction()
        if self.broadcast_buffers and is_grad_enabled() and self.process_group.size > 1:
            _broadcast_coalesced(self.process_group, list(self.module.buffers()))
        output = self.module(*args, **kwargs)
        if self._sync and is_grad_enabled():
            self._reduction = self._prepare(output)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Gradient accumulation: backward passes of forwards run inside this context
        only add to the local ``.grad``; the first synchronised backward after them
        averages the accumulated sum. (PyTorch's name.)"""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def _prepare(self, output):
        """Count the gradient contributions each parameter will receive in backward: one
        per edge from a node of the graph (reachable from the outputs) to it."""
        expected = [0] * len(self._params)
        stack, seen = [], set()
        for t in _tensors_in(output):
            if not t.requires_grad:
                continue
            if t.grad_fn is None:  # forward returned a parameter itself
                i = self._index.get(id(t))
                if i is not None:
                    expected[i] += 1
            elif id(t.grad_fn) not in seen:
                seen.add(id(t.grad_fn))
                stack.append(t.grad_fn)
        while stack:  # iterative: a deep network would overflow a recursive walk
            node = stack.pop()
            for t in node.inputs:
                if t is None or not t.requires_grad:  # None: an optional input left out
                    continue
                if t.grad_fn is None:
                    i = self._index.get(id(t))
                    if i is not None:
                        expected[i] += 1
                elif id(t.grad_fn) not in seen:
                    seen.add(id(t.grad_fn))
                    stack.append(t.grad_fn)
        if not any(expected):
            return None
        return _Reduction(expected, self._buckets, self._params)

    def _check_previous_reduction(self) -> None:
        r, self._reduction = self._reduction, None
        if r is None or r.finished or not any(r.arrived):
            return  # done, or a forward without backward (evaluation with grad enabled)
        missing = [self._names[i] for i, (a, e) in enumerate(zip(r.arrived, r.expected))
                   if a < e]
        raise RuntimeError(
            f"DistributedDataParallel: the previous backward did not reach every parameter "
            f"used in forward ({len(missing)} got no final gradient, the first: "
            f"{missing[0]!r}), so its gradients were NOT averaged across ranks. Use every "
            "output of forward in the loss, or run that forward and backward under "
            "no_sync().")

    # ----------------------------------------------------------------- backward
    def _make_hook(self, i: int):
        def hook(grad: Tensor):
            r = self._reduction
            if r is None:
                return None  # a backward under no_sync(), or of a no-grad forward
            return self._on_gradient(r, i, grad)

        return hook

    def _on_gradient(self, r: _Reduction, i: int, grad: Tensor):
        r.arrived[i] += 1
        if r.finished or r.arrived[i] > r.expected[i]:
            self._reduction = None
            raise RuntimeError(
                f"DistributedDataParallel: parameter {self._names[i]!r} received more "
                f"gradients in backward than the forward's graph gives it ({r.expected[i]}), "
                "so they cannot all be averaged across ranks: it is also used outside the "
                "wrapper's forward (a penalty in the loss? use the optimizer's weight_decay; "
                "the module called without the wrapper?), or backward ran twice through one "
                "forward")
        if r.arrived[i] < r.expected[i]:
            if self.overlap:
                self._progress(r)
            return None
        p = self._params[i]
        local = grad.data if p.grad is None else p.grad.data + grad.data
        self._fill(r, i, local)
        r.remaining -= 1
        if self.overlap:
            self._launch_ready(r)
        if r.remaining > 0:
            return None
        # the last gradient of the model: finish every bucket
        for j, e in enumerate(r.expected):
            if e == 0:  # not used in this forward: its gradient is what .grad holds
                q = self._params[j]
                self._fill(r, j, q.grad.data if q.grad is not None else
                           backend.array_module(q.data).zeros(q.shape, q.dtype))
        self._launch_ready(r)
        start = time.perf_counter()
        for work in r.works:
            work.wait()
        self.comm_seconds += time.perf_counter() - start
        r.finished = True
        averaged = None
        for bucket, flat in zip(self._buckets, r.flats):
            for j, (lo, hi, shape) in bucket.slices.items():
                g = Tensor(flat[lo:hi].reshape(shape))  # (numel,) -> the parameter's shape
                if j == i:
                    averaged = g
                else:
                    self._params[j].grad = g
        # the engine adds what this hook returns to .grad: clear it, so .grad is the mean
        p.grad = None
        return averaged

    def _fill(self, r: _Reduction, i: int, local) -> None:
        k = self._bucket_of[i]
        lo, hi, _ = self._buckets[k].slices[i]
        r.flats[k][lo:hi] = local.reshape(-1)  # the parameter's shape -> (numel,)
        r.pending[k] -= 1

    def _launch_ready(self, r: _Reduction) -> None:
        start = time.perf_counter()
        while r.launched < len(self._buckets) and r.pending[r.launched] == 0:
            flat = r.flats[r.launched]
            r.works.append(self.process_group.all_reduce_async(flat, "mean"))
            r.launched += 1
            self.comm_calls += 1
        self.comm_seconds += time.perf_counter() - start

    @staticmethod
    def _progress(r: _Reduction) -> None:
        """Let MPI move the buckets in flight along (it progresses inside MPI calls)."""
        for work in r.works:
            if not work.is_completed():
                break

    def extra_repr(self) -> str:
        return (f"world_size={self.process_group.size}, buckets={len(self._buckets)}, "
                f"bucket_cap_mb={self.bucket_cap_mb}, overlap={self.overlap}")


def _tensors_in(output):
    """The Tensors in a forward's output: a Tensor, or tuples, lists and dicts of them."""
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors_in(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors_in(item)


def _broadcast_coalesced(group, tensors: list, src: int = 0) -> None:
    """Broadcast many tensors from ``src`` with one collective per (dtype, device)."""
    if group.size == 1:
        return
    by_kind = {}
    for t in tensors:
        by_kind.setdefault((str(t.dtype), t.device), []).append(t)
    with no_grad():
        for same in by_kind.values():
            xp = backend.array_module(same[0].data)
            flat = xp.concatenate([t.data.reshape(-1) for t in same])
            group.broadcast(flat, src)
            start = 0
            for t in same:
                n = t.numel()
                t.data[...] = flat[start:start + n].reshape(t.shape)  # (n,) -> t's shape
                start += n

