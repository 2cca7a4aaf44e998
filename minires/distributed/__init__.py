"""Data-parallel training across processes: MPI for host arrays, NCCL for GPU arrays.

Start N copies of a script with ``mpiexec -n N python train.py``; in it::

    import minires.distributed as dist

    dist.init_process_group()                     # rank and world from mpiexec
    model = dist.convert_sync_batchnorm(model)    # optional: BatchNorm over all ranks
    ddp = dist.DistributedDataParallel(model)     # same start, averaged gradients
    sampler = dist.DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=64, sampler=sampler)  # 64 per rank
    for images, labels in loader:
        loss = F.cross_entropy(ddp(images), labels)
        optimizer.zero_grad()
        loss.backward()                           # .grad: the mean over all ranks
        optimizer.step()

Without ``mpiexec`` (and without mpi4py) the same script runs as a world of one process.
The module functions follow ``torch.distributed``: ``get_rank``, ``get_world_size``,
``all_reduce``, ``broadcast``, ``all_gather``, ``barrier``, ... See docs/distributed.md.
"""

from .comm import Work
from .ddp import DEFAULT_BUCKET_CAP_MB, DistributedDataParallel
from .group import (
    ProcessGroup,
    ReduceOp,
    all_gather,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    check_same_on_all_ranks,
    default_group,
    destroy_process_group,
    get_local_rank,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
    launcher_world_size,
)
from .sampler import DistributedSampler
from .sync_batchnorm import (
    SyncBatchNorm,
    SyncBatchNormFunction,
    convert_sync_batchnorm,
    sync_batch_norm,
)

__all__ = [
    "DEFAULT_BUCKET_CAP_MB", "DistributedDataParallel", "DistributedSampler", "ProcessGroup",
    "ReduceOp", "SyncBatchNorm", "SyncBatchNormFunction", "Work", "all_gather",
    "all_gather_object", "all_reduce", "barrier", "broadcast", "broadcast_object_list",
    "check_same_on_all_ranks", "convert_sync_batchnorm", "default_group",
    "destroy_process_group", "get_local_rank", "get_rank", "get_world_size",
    "init_process_group", "is_initialized", "launcher_world_size", "sync_batch_norm",
]
