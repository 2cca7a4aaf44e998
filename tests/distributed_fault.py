"""Rank 1 raises while rank 0 waits in an all-reduce that rank 1 never joins.

Without init_process_group's abort hook rank 0 would wait forever; with it, rank 1
prints its traceback (each line marked ``[rank 1/2]``) and MPI_Abort ends both ranks.
Run by tests/test_distributed_mpi.py under ``mpiexec -n 2`` with a timeout.
"""

import numpy as np

import minires.distributed as dist

dist.init_process_group()
if dist.get_rank() == 1:
    raise ValueError("deliberate failure on rank 1")
dist.all_reduce(np.ones(3))
print("rank 0 got past the all_reduce", flush=True)
