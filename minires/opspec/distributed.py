"""The spec of SyncBatchNorm's op (``minires/distributed/sync_batchnorm.py``) in a world of
one process, where its collectives are the identity; ``tests/test_distributed_mpi.py``
checks its backward across two ranks."""

from __future__ import annotations

from ..distributed import sync_batch_norm
from .inputs import normal
from .norm import batch_norm_reference
from .norm import call as batch_norm_call
from .records import OpSpec, Sample


def sync_batch_norm_reference(x, running_mean, running_var, weight=None, bias=None,
                              momentum=0.1, eps=1e-5, process_group=None):
    return batch_norm_reference(x, running_mean, running_var, weight, bias, True, momentum, eps)


SPECS = [
    OpSpec("sync_batch_norm", sync_batch_norm, (
        Sample("sync_batch_norm_world_of_one", (normal(4, 3, 3, 2), normal(3), normal(3))),
    ), torch="torch.nn.SyncBatchNorm", parity=False, call=batch_norm_call,
        reference=sync_batch_norm_reference),
]
