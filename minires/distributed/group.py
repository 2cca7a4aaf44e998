"""The process group and the collectives of ``minires.distributed``, as in ``torch.distributed``.

``init_process_group()`` reads the world from MPI's environment: started by
``mpiexec -n N``, this process is one of N ranks. On a machine with GPUs it takes the
GPU of its local rank (its number among the processes on this machine), so one
process drives one GPU. Without ``mpiexec``, and without mpi4py, it is a world of one
process in which every collective is the identity: a data-parallel script runs
unchanged as a single process.

The collectives take minires Tensors or xp arrays (NumPy or CuPy) and work in place,
like PyTorch's. Which library moves the bytes depends on where the array lives: MPI
for host arrays, NCCL for GPU arrays (see comm.py). Every rank must call the same
collectives in the same order, with arrays of the same shape, dtype and device.

Objects (settings, model signatures) travel as JSON, never pickled: unpickling bytes
from another process could run code.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy

from .. import backend
from ..tensors import Tensor
from . import faults
from .comm import LocalComm, MPIComm, NcclComm, StagedComm, Work


class ReduceOp:
    """The reductions of ``all_reduce``, by PyTorch's names (``AVG`` is also ``MEAN``)."""

    SUM = "sum"
    AVG = MEAN = "mean"
    MAX = "max"
    MIN = "min"


_REDUCE_OPS = ("sum", "mean", "max", "min")

# Environment variables through which MPI launchers announce the number of processes:
# MPICH's and Intel MPI's mpiexec (and Slurm's PMI-2), Open MPI's mpirun, MVAPICH2.
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launcher_world_size() -> int | None:
    """The number of processes an MPI launcher started, or None when none did."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _reduce_op(op, where: str) -> str:
    name = str(op).lower()
    name = "mean" if name == "avg" else name
    if name not in _REDUCE_OPS:
        raise ValueError(f"{where}: unknown reduce op {op!r}; expected one of "
                         f"{', '.join(_REDUCE_OPS)} (or ReduceOp.SUM, ReduceOp.AVG, ...)")
    return name


class ProcessGroup:
    """The ranks of one job and the communicators that connect them.

    ``host`` carries NumPy arrays; GPU arrays go through NCCL, whose communicator is
    created at the first GPU collective (that first call is collective too, so every
    rank creates it at the same point). Most code uses the module functions
    (``all_reduce``, ...) on the default group made by ``init_process_group``.
    """

    def __init__(self, host, *, local_rank: int = 0, local_size: int = 1, cupy=None,
                 backend_name: str = "local"):
        self.host = host
        self.rank, self.size = host.rank, host.size
        self.local_rank, self.local_size = local_rank, local_size
        self.backend = backend_name
        self._cupy = cupy
        self._device = None  # the GPU communicator, made on first use

    # ----------------------------------------------------------------- routing
    def comm_for(self, array):
        """The communicator for ``array``: by its device, as ``backend.array_module``."""
        if self.size == 1 or backend.device_of(array) == "cpu":
            return self.host
        if self._device is None:
            self._device = self._make_device_comm()
        return self._device

    def _make_device_comm(self):
        cupy = self._cupy if self._cupy is not None else backend.cupy
        nccl = getattr(getattr(cupy, "cuda", None), "nccl", None)
        if nccl is not None and getattr(nccl, "available", False):
            if self.local_size > backend.cuda.device_count():
                raise RuntimeError(
                    f"minires.distributed: {self.local_size} processes on this machine share "
                    f"{backend.cuda.device_count()} GPU(s), but NCCL needs one GPU per process; "
                    f"start at most {backend.cuda.device_count()} processes per machine")
            return NcclComm.bootstrap(self.host, cupy)
        warnings.warn("minires.distributed: CuPy has no NCCL (pip install nvidia-nccl-cu12, "
                      "or the nccl package of your CUDA version), so GPU arrays are copied to "
                      "the host for every collective; that is slow", stacklevel=3)
        return StagedComm(self.host)

    # ----------------------------------------------------------------- collectives
    def all_reduce(self, array, op="sum"):
        """Reduce ``array`` over all ranks, in place; returns it."""
        op = _reduce_op(op, "all_reduce")
        _check_reducible(array, op, "all_reduce")
        buf, copied = _flat(array, "all_reduce")
        comm = self.comm_for(buf)
        comm.all_reduce(buf, "sum" if op == "mean" else op)
        if op == "mean":
            buf /= self.size
        if copied:
            array[...] = buf.reshape(array.shape)
        return array

    def all_reduce_async(self, buf, op="sum") -> Work:
        """Start reducing a contiguous 1-D ``buf`` in place; ``wait()`` on the result
        (for a mean it also divides). Used by DistributedDataParallel's buckets."""
        op = _reduce_op(op, "all_reduce_async")
        _check_reducible(buf, op, "all_reduce_async")
        if buf.ndim != 1 or not buf.flags.c_contiguous:
            raise ValueError(f"all_reduce_async: expected a contiguous 1-D buffer, got shape "
                             f"{tuple(buf.shape)}")
        work = self.comm_for(buf).all_reduce_async(buf, "sum" if op == "mean" else op)
        if op != "mean" or self.size == 1:
            return work
        size = self.size

        def divide():  # after the wait: on the GPU, queued after the transfer
            buf[...] /= size

        return Work(wait=work.wait, test=work.is_completed, then=divide)

    def broadcast(self, array, src: int = 0):
        """Copy ``array`` of rank ``src`` into ``array`` on every rank, in place."""
        self._check_rank(src, "broadcast")
        buf, copied = _flat(array, "broadcast")
        self.comm_for(buf).broadcast(buf, src)
        if copied:
            array[...] = buf.reshape(array.shape)
        return array

    def all_gather(self, array):
        """A new array of shape ``(world_size, *array.shape)``: every rank's ``array``."""
        xp = backend.array_module(array)
        buf = xp.ascontiguousarray(array).reshape(-1)
        out = xp.empty((self.size, buf.size), dtype=buf.dtype)
        self.comm_for(buf).all_gather(buf, out)
        return out.reshape((self.size,) + tuple(array.shape))

    def all_gather_object(self, obj) -> list:
        """Every rank's JSON-able ``obj``, in rank order (tuples come back as lists)."""
        data = _to_json(obj, "all_gather_object")
        return [json.loads(b.decode()) for b in self.host.all_gather_bytes(data)]

    def broadcast_object(self, obj, src: int = 0):
        """Rank ``src``'s JSON-able ``obj`` on every rank."""
        self._check_rank(src, "broadcast_object")
        data = _to_json(obj, "broadcast_object") if self.rank == src else b""
        return json.loads(self.host.broadcast_bytes(data, src).decode())

    def barrier(self) -> None:
        """Wait until every rank of the group has reached this call."""
        self.host.barrier()

    def destroy(self) -> None:
        """Free the group's communicators (host, and the GPU's when one was made)."""
        if self._device is not None:
            self._device.destroy()
            self._device = None
        self.host.destroy()

    def _check_rank(self, src: int, where: str) -> None:
        if not 0 <= int(src) < self.size:
            raise ValueError(f"{where}: src={src} is not a rank of this world of size "
                             f"{self.size}")

    def __repr__(self) -> str:
        return (f"ProcessGroup(backend={self.backend!r}, rank={self.rank}, size={self.size}, "
                f"local_rank={self.local_rank})")


def _check_reducible(array, op: str, where: str) -> None:
    if op == "mean" and numpy.dtype(array.dtype).kind not in "fc":
        raise TypeError(f"{where}: a mean of {array.dtype} values is not an integer; reduce "
                        f"with 'sum' and divide, or use a floating-point array")


def _flat(array, where: str):
    """A contiguous 1-D buffer of ``array``: a view when possible (the collective then
    writes straight into it), else a copy that the caller writes back."""
    flags = array.flags
    if not getattr(flags, "writeable", True):
        raise ValueError(f"{where}: the array is read-only (shape {tuple(array.shape)})")
    if flags.c_contiguous:
        return array.reshape(-1), False
    xp = backend.array_module(array)
    return xp.ascontiguousarray(array).reshape(-1), True


def _to_json(obj, where: str) -> bytes:
    try:
        return json.dumps(obj).encode()
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where}: objects are sent as JSON, and this one is not JSON-able "
                        f"({error})") from None


# --------------------------------------------------------------------------- the default group

_group: ProcessGroup | None = None
_single: ProcessGroup | None = None  # the world of one used before init_process_group


def init_process_group(backend: str = "auto", *, abort_on_exception: bool = True) -> None:
    """Join the job's process group (PyTorch's name); call it once, early, on every rank.

    ``backend``: ``"mpi"`` (mpi4py; started by ``mpiexec``), ``"local"`` (a world of
    this one process), or ``"auto"``: MPI when an MPI launcher started this process,
    else local. GPU arrays use NCCL in either case where there is more than one rank.

    With CUDA, each process selects GPU ``local_rank % device_count`` here, before it
    allocates anything on a GPU. With ``abort_on_exception`` (the default) an uncaught
    exception on any rank prints that rank's traceback and ends every rank
    (``MPI_Abort``), instead of leaving the others waiting forever in a collective.
    """
    global _group
    if _group is not None:
        raise RuntimeError("init_process_group: the default process group is already "
                           "initialized; call destroy_process_group() first")
    if backend not in ("auto", "mpi", "local"):
        raise ValueError(f"init_process_group: unknown backend {backend!r}; expected "
                         "'auto', 'mpi' or 'local'")
    launched = launcher_world_size()
    if backend == "auto":
        backend = "mpi" if launched is not None else "local"
    if backend == "local":
        if launched is not None and launched > 1:
            raise RuntimeError(f"init_process_group(backend='local'): this process is one of "
                               f"{launched} started by an MPI launcher; use backend='mpi'")
        group = ProcessGroup(LocalComm())
    else:
        group = _mpi_group()
    _select_gpu(group)
    if abort_on_exception and group.size > 1:
        faults.install(group.rank, group.size)
    _group = group


def _mpi_group() -> ProcessGroup:
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(
            f"minires.distributed needs mpi4py to run several processes ({error}). Install "
            "it with an MPI library: pip install 'minires[distributed]' (mpi4py and MPICH), "
            "or pip install mpi4py against your cluster's MPI") from None
    world = MPI.COMM_WORLD.Dup()  # our own context: user messages on COMM_WORLD never mix in
    rank = world.Get_rank()
    local = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)  # the ranks on this machine
    local_rank, local_size = local.Get_rank(), local.Get_size()
    local.Free()
    host = MPIComm(world, MPI) if world.Get_size() > 1 else LocalComm()
    return ProcessGroup(host, local_rank=local_rank, local_size=local_size, backend_name="mpi")


def _select_gpu(group: ProcessGroup) -> None:
    """One process per GPU: the local rank picks it, before any GPU memory is used."""
    if backend.cuda.is_available():
        backend.cupy.cuda.Device(group.local_rank % backend.cuda.device_count()).use()


def destroy_process_group() -> None:
    """Leave the process group: free its communicators and the abort-on-exception hook.
    MPI itself stays initialized until the process exits (mpi4py finalizes it)."""
    global _group
    if _group is None:
        raise RuntimeError("destroy_process_group: no process group is initialized")
    group, _group = _group, None
    faults.uninstall()
    group.destroy()


def is_initialized() -> bool:
    """Whether ``init_process_group`` has run (and ``destroy_process_group`` has not)."""
    return _group is not None


def default_group() -> ProcessGroup:
    """The group of ``init_process_group``; before it, a world of this one process,
    unless an MPI launcher started several (then forgetting init would make every
    process believe it is rank 0, and that is an error)."""
    global _single
    if _group is not None:
        return _group
    launched = launcher_world_size()
    if launched is not None and launched > 1:
        raise RuntimeError(
            f"minires.distributed: this process is one of {launched} started by an MPI "
            "launcher, but init_process_group() has not been called; call it first on "
            "every rank")
    if _single is None:
        _single = ProcessGroup(LocalComm())
    return _single


def get_rank() -> int:
    """This process's rank, 0..world_size-1 (0 in a world of one)."""
    return default_group().rank


def get_world_size() -> int:
    """The number of processes in the job (1 without mpiexec)."""
    return default_group().size


def get_local_rank() -> int:
    """This process's number among the processes on its machine: its GPU index."""
    return default_group().local_rank


# --------------------------------------------------------------------------- collectives


def _array(x, where: str):
    if isinstance(x, Tensor):
        return x.data
    if isinstance(x, numpy.ndarray) or backend.is_cupy_array(x):
        return x
    raise TypeError(f"{where}: expected a minires Tensor or a NumPy/CuPy array, got "
                    f"{type(x).__name__}")


def all_reduce(tensor, op=ReduceOp.SUM):
    """Reduce ``tensor`` (a Tensor or xp array) over all ranks, in place: ``"sum"``,
    ``"mean"``, ``"max"`` or ``"min"``. Returns it. Not recorded by autograd."""
    default_group().all_reduce(_array(tensor, "all_reduce"), op)
    return tensor


def broadcast(tensor, src: int = 0):
    """Overwrite ``tensor`` on every rank with rank ``src``'s, in place; returns it."""
    default_group().broadcast(_array(tensor, "broadcast"), src)
    return tensor


def all_gather(tensor_list: list, tensor) -> list:
    """Every rank's ``tensor`` into ``tensor_list``, in rank order, as PyTorch's
    ``all_gather(tensor_list, tensor)``. The list holds ``world_size`` Tensors (or
    arrays) of ``tensor``'s shape, written in place, or is empty and gets new ones of
    ``tensor``'s kind appended. Returns the list."""
    group = default_group()
    gathered = group.all_gather(_array(tensor, "all_gather"))
    if not tensor_list:
        tensor_list.extend(Tensor(g) if isinstance(tensor, Tensor) else g for g in gathered)
        return tensor_list
    if len(tensor_list) != group.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} entries but the "
                         f"world has {group.size} ranks (or pass an empty list)")
    for out, value in zip(tensor_list, gathered):
        target = _array(out, "all_gather")
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(f"all_gather: an entry of tensor_list has shape "
                             f"{tuple(target.shape)}, expected {tuple(value.shape)}")
        target[...] = value
    return tensor_list


def all_gather_object(object_list: list, obj) -> list:
    """Every rank's ``obj`` (JSON-able) into ``object_list`` (emptied first), in rank
    order. JSON, not pickle: tuples come back as lists."""
    object_list[:] = default_group().all_gather_object(obj)
    return object_list


def broadcast_object_list(object_list: list, src: int = 0) -> list:
    """Replace the entries of ``object_list`` on every rank with rank ``src``'s (JSON)."""
    object_list[:] = default_group().broadcast_object(list(object_list), src)
    return object_list


def barrier() -> None:
    """Wait until every rank has called ``barrier()``."""
    default_group().barrier()


def check_same_on_all_ranks(value, what: str) -> None:
    """Raise on every rank when the JSON-able ``value`` is not the same on all ranks,
    naming the first difference: for settings that must agree (a seed, a batch size,
    a model's parameter shapes) before any work is done."""
    values = default_group().all_gather_object(value)
    for rank, other in enumerate(values):
        difference = first_difference(values[0], other)
        if difference is not None:
            path, ours, theirs = difference
            raise RuntimeError(f"{what} differs between ranks: {path or 'the value'} is "
                               f"{theirs!r} on rank {rank} but {ours!r} on rank 0")


def first_difference(a, b, path: str = ""):
    """``(path, a_part, b_part)`` of the first place where two JSON values differ, or None.
    The path names dict keys, joined by ', ' (a list of plain values is one value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            where = f"{path}, {key}" if path else str(key)
            if key not in a or key not in b:
                return (where, a.get(key, "<missing>"), b.get(key, "<missing>"))
            found = first_difference(a[key], b[key], where)
            if found:
                return found
        return None
    nested = any(isinstance(v, (dict, list)) for v in (a if isinstance(a, list) else []))
    if isinstance(a, list) and isinstance(b, list) and nested:
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return (f"{path} (length)", len(a), len(b))
        return None
    return None if a == b else (path, a, b)
