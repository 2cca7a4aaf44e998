"""minires.distributed with 2 real MPI processes on the CPU.

One ``mpiexec -n 2 python tests/distributed_worker.py`` run (a few seconds) does the
work of every check; each test below asserts on what the ranks reported. The fault
test launches its own job. Skipped, with the reason, only where mpi4py or mpiexec is
missing (``pip install 'minires[distributed]'`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds; the worker needs a few on 2 cores


def mpiexec_command(n: int) -> list:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install "
                        "'minires[distributed]' (mpi4py and mpich) to run the MPI tests")
    # the mpiexec of the MPI that mpi4py was built against sits next to this Python
    found = (shutil.which("mpiexec", path=os.path.dirname(sys.executable))
             or shutil.which("mpiexec"))
    if found is None:
        pytest.skip("mpiexec not found: pip install mpich (or an MPI with its mpiexec)")
    return [found, "-n", str(n)]


def run_mpi(n: int, script: Path, *args, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(mpiexec_command(n) + [sys.executable, str(script), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """{check: [rank 0's result, rank 1's result]} from one 2-process run."""
    out = tmp_path_factory.mktemp("mpi") / "results.json"
    run = run_mpi(2, ROOT / "tests" / "distributed_worker.py", out)
    assert run.returncode == 0, f"the 2-rank worker failed:\n{run.stdout[-3000:]}\n" \
                                f"{run.stderr[-6000:]}"
    return json.loads(out.read_text(encoding="utf-8"))


def test_get_rank_without_init_under_mpiexec_is_an_error(ranks):
    for r in ranks["uninitialized_under_mpiexec"]:
        assert "init_process_group() has not been called" in r["error"]


def test_world_has_two_ranks_with_their_local_ranks(ranks):
    assert [(r["rank"], r["size"], r["local_rank"], r["backend"]) for r in ranks["world"]] == \
        [(0, 2, 0, "mpi"), (1, 2, 1, "mpi")]


def test_all_reduce_sum_mean_max_min_on_arrays_and_tensors(ranks):
    base = np.arange(6.0).reshape(2, 3)
    rank_values = [base, base + 10]
    for r in ranks["collectives"]:
        np.testing.assert_array_equal(r["sum"], rank_values[0] + rank_values[1])
        np.testing.assert_array_equal(r["mean"], (rank_values[0] + rank_values[1]) / 2)
        np.testing.assert_array_equal(r["max"], rank_values[1])
        np.testing.assert_array_equal(r["min"], rank_values[0])
        np.testing.assert_array_equal(r["tensor_mean"], (rank_values[0] + rank_values[1]) / 2)
        assert r["tensor_dtype"] == "float32"
        assert r["int_sum"] == [3, 14]
        assert "mean of int64" in r["int_mean_error"]


def test_all_reduce_of_a_strided_view_writes_into_its_parent(ranks):
    for rank, r in enumerate(ranks["collectives"]):
        parent = np.array(r["strided_parent"])
        np.testing.assert_array_equal(parent[:, ::2], 3.0)  # 1 + 2: reduced
        np.testing.assert_array_equal(parent[:, 1::2], rank + 1.0)  # untouched


def test_broadcast_and_all_gather_and_object_collectives(ranks):
    for r in ranks["collectives"]:
        assert r["broadcast_from_1"] == [1.0, 1.0, 1.0]
        assert r["all_gather_tensors"] == [[0.0, 0.0], [1.0, 2.0]]
        assert r["all_gather_kinds"] == ["Tensor", "Tensor"]
        assert r["all_gather_into"] == [[0.0, 0.0], [1.0, -1.0]]
        assert r["all_gather_object"] == [{"rank": 0, "name": "r0"}, {"rank": 1, "name": "r1"}]
        assert r["broadcast_object_list"] == [100, "from rank 1"]


def test_ddp_construction_broadcasts_rank0_parameters_and_buffers(ranks):
    for r in ranks["broadcast_at_construction"]:
        assert r["before"] > 0.01  # the ranks really started different
        assert r["after"] == 0.0


def test_ddp_broadcasts_buffers_from_rank0_before_forward(ranks):
    for r in ranks["buffers_broadcast_each_forward"]:
        assert r["running_mean"] == [1.0] * 4  # rank 0's value (rank 1 had set 2.0)


def test_ddp_gradients_equal_the_allreduced_mean_of_local_gradients(ranks):
    for r in ranks["ddp_gradients_are_the_allreduced_mean"]:
        for label, case in r.items():
            assert case["local_grads_differ_by"] > 1e-3, label  # the ranks had different data
            assert case["max_error"] < 1e-15, label
            assert case["ddp_grads_differ_across_ranks"] == 0.0, label


def test_ddp_makes_one_allreduce_per_bucket_not_per_tensor(ranks):
    for r in ranks["ddp_gradients_are_the_allreduced_mean"]:
        one = r["one bucket, overlap"]
        assert (one["buckets"], one["allreduce_calls"]) == (1, 1)
        assert one["parameters"] == 4
        for label in ("tiny buckets, overlap", "tiny buckets, after backward"):
            assert r[label]["allreduce_calls"] == r[label]["buckets"] == 4


def test_no_sync_accumulates_locally_then_averages_the_sum(ranks):
    for r in ranks["no_sync_accumulates"]:
        assert r["calls_inside_no_sync"] == 0
        assert r["grads_differ_across_ranks_inside"] > 1e-3  # local gradients only
        assert r["calls_after"] == 1
        assert r["max_error"] < 1e-15


def test_two_ranks_of_64_equal_one_rank_of_128_after_10_sgd_steps(ranks):
    for r in ranks["two_ranks_equal_one_rank_big_batch"]:
        assert r["weights_moved"] > 1e-2  # training changed the weights
        assert r["max_weight_diff"] < 1e-12
        assert r["ranks_differ_by"] == 0.0


def test_sync_batchnorm_on_two_ranks_equals_batchnorm_at_batch_128(ranks):
    for r in ranks["sync_batchnorm_equals_batchnorm_big_batch"]:
        assert r["max_state_diff"] < 1e-12  # weights and running statistics
        assert r["running_var_diff"] < 1e-12
        assert r["batches_tracked"] == 10
        assert r["ranks_differ_by"] == 0.0
        assert r["plain_batchnorm_diff"] > 1e-3  # per-rank statistics: not the same training


def test_sync_batchnorm_backward_passes_a_gradcheck_across_ranks(ranks):
    for r in ranks["sync_batchnorm_gradcheck"]:
        assert r["x_grad_norm"] > 0.1
        for name, excess in r["worst_excess"].items():
            assert excess <= 0, f"gradient of {name} off by {excess} past the tolerance"


def test_mismatched_models_and_settings_are_detected_at_start_on_every_rank(ranks):
    for r in ranks["model_mismatch_is_detected"]:
        assert "parameter '2.weight', shape: [3, 8] on rank 1, [2, 8] on rank 0" in \
            r["shape_error"]
        assert "bucket_cap_mb: 2.0 on rank 1, 1.0 on rank 0" in r["settings_error"]
    for r in ranks["sampler_settings_mismatch_is_detected"]:
        assert "seed is 1 on rank 1 but 0 on rank 0" in r["error"]


def test_sampler_shards_from_the_process_group_are_disjoint_and_cover_the_data(ranks):
    r0, r1 = ranks["sampler_shards"]
    padded = r0["drop_last=False"]
    assert padded["global"] == r1["drop_last=False"]["global"]  # no communication needed
    both = padded["order"] + r1["drop_last=False"]["order"]
    assert sorted(both) == sorted(padded["global"]) and set(both) == set(range(11))
    assert padded["len"] == 6 and len(both) == 12  # 11 padded to 12: one sample repeated
    cut = r0["drop_last=True"]["order"] + r1["drop_last=True"]["order"]
    assert len(cut) == len(set(cut)) == 10  # 11 cut to 10: none repeated


def test_an_exception_on_one_rank_ends_every_rank_with_its_message():
    start = time.monotonic()
    try:
        run = run_mpi(2, ROOT / "tests" / "distributed_fault.py", timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a failing rank left the other waiting: the job hung for 120 s")
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert "[rank 1/2] ValueError: deliberate failure on rank 1" in run.stderr, run.stderr
    assert "rank 0 got past the all_reduce" not in run.stdout
    assert elapsed < 120
