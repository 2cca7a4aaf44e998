"""``minires train`` and the training loop on 2 MPI processes, against 1 process.

Three kinds of runs, each a few seconds on 2 CPU cores:

* tests/distributed_train_worker.py: the loop (``fit``) in float64 on 2 ranks, checked
  against 1 process: equal weights and metrics up to rounding, sharded evaluation bit for
  bit, a signal or a NaN on one rank stopping both, checkpoints resumed across a change
  of the number of ranks;
* the ``minires`` command (float32): ``--nproc 2`` against 1 process with the same global
  batch; tests/distributed_cli.py (the command, with a signal, an exception or other
  settings on one rank, and a record of the files each rank writes);
* faults: an exception on one rank ends both, with its message, within a timeout.

float32 runs are compared with a tolerance: 2 ranks add their gradients in another
order than 1 process, which changes the last bits, and a few steps carry that into the
weights (ResNets amplify it far more, through the ReLUs it flips: hence small MLPs here).
Skipped, with the reason, where mpi4py or mpiexec is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_distributed_mpi import ROOT, mpiexec_command

import minires as mr

TIMEOUT = 120  # seconds for one job; they take a few
# 96 images in global batches of 32: 3 steps of 2 x 16 (the loop's float64 runs split an
# uneven last batch; here, BatchNorm over a last batch of 3 images would turn the float32
# rounding into differences of 1e-3 within a step or two, on 1 process as on 2)
ARGS = ["train", "--model", "residual_mlp", "--sync-bn", "--dataset", "cifar10-sample",
        "--limit-train", "96", "--batch-size", "32", "--epochs", "1", "--lr", "0.05",
        "--no-progress"]
# float32, 2 ranks against 1 process: the largest weight difference (about 2e-6 with
# OpenBLAS; 10x that allowed), and the relative difference of
# the losses; the accuracies must be equal
FLOAT32_WEIGHTS = 2e-5
FLOAT32_METRICS = 1e-5


def environment() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run(command: list, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s (a rank waiting forever?): {' '.join(command)}")


def minires(*args) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "minires", *map(str, args)])


def on_two_ranks(*args, options=()) -> subprocess.CompletedProcess:
    """``mpiexec -n 2 minires ARGS`` through tests/distributed_cli.py and its options."""
    return run(mpiexec_command(2) + [sys.executable, str(ROOT / "tests" / "distributed_cli.py"),
                                     *options, "--", *map(str, args)])


def state(folder) -> dict:
    checkpoint = mr.load(os.path.join(folder, "checkpoint.mr"))
    return {k: v.data for k, v in checkpoint["model"].items()}


def largest_difference(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


def metrics(folder) -> list:
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_metrics(rows: list, reference: list, relative: float) -> None:
    assert len(rows) == len(reference)
    for row, ref in zip(rows, reference):
        for key in ("train_loss", "test_loss"):
            assert row[key] == pytest.approx(ref[key], rel=relative), key
        for key in ("epoch", "train_acc", "test_acc", "lr"):
            assert row[key] == ref[key], key


# --------------------------------------------------------------------------- the loop, float64


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop")
    job = run(mpiexec_command(2) + [sys.executable,
                                    str(ROOT / "tests" / "distributed_train_worker.py"), folder])
    assert job.returncode == 0, f"the worker failed:\n{job.stdout[-3000:]}\n{job.stderr[-6000:]}"
    return json.loads((folder / "results.json").read_text())


def test_two_ranks_train_as_one_process_in_float64_with_an_uneven_last_batch(loop):
    assert loop["weights_moved"] > 1e-2  # the runs trained
    assert loop["two_vs_one_weights"] < 1e-12  # 8 SGD steps, SyncBatchNorm vs BatchNorm
    assert loop["ranks_differ_by"] == 0.0


def test_two_ranks_log_the_metrics_of_one_process(loop):
    one, two = loop["histories"]
    assert_same_metrics(two, one, relative=1e-12)


def test_sharded_evaluation_equals_one_process_bit_for_bit(loop):
    sharded, single = loop["evaluation"]
    assert sharded == single


def test_a_signal_on_one_rank_stops_both_after_the_same_step(loop):
    rank0, rank1 = loop["stop_on_each_rank"]
    assert rank0 == rank1  # epoch, step, signal and message
    assert rank0["stopped"][:3] == [2, 1, "SIGINT"]  # sent to rank 1 after step 5 of 8
    for stop in loop["sigterm_on_rank0"]:  # sent to rank 0 alone: both name it
        assert stop["stopped"][:3] == [1, 2, "SIGTERM"]


def test_a_two_rank_checkpoint_resumes_exactly_on_two_ranks_and_on_one(loop):
    assert loop["resumed_by_2_vs_uninterrupted_2"] == 0.0  # bit for bit
    one, two = loop["histories"]
    assert loop["resumed_by_2_history"][-1]["train_loss"] == two[-1]["train_loss"]
    assert_same_metrics(loop["resumed_by_2_history"], two, relative=0)
    assert loop["resumed_by_1_vs_one"] < 1e-12  # up to rounding: another number of ranks
    assert_same_metrics(loop["resumed_by_1_history"], one, relative=1e-12)


def test_a_one_process_checkpoint_resumes_on_two_ranks(loop):
    assert loop["stop_alone"]["stopped"][:2] == [1, 3]  # mid-epoch
    assert loop["one_resumed_by_2_vs_one"] < 1e-12
    one, _ = loop["histories"]
    assert_same_metrics(loop["one_resumed_by_2_history"], one, relative=1e-12)


def test_a_nan_on_one_rank_stops_both_at_the_same_step(loop):
    rank0, rank1 = loop["nan_on_rank1"]
    assert rank0 == rank1
    assert rank0["non_finite"][:2] == [1, 3]  # the step of rank 1's NaN, read at step 4
    assert "the training loss became nan at epoch 1, step 3" in rank0["non_finite"][2]


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Runs of the command: 1 process, 2 by --nproc, 2 stopped by a SIGINT to rank 1
    after step 2 of 3, and that checkpoint resumed by 2 ranks and by 1."""
    folder = tmp_path_factory.mktemp("cli")
    runs = {"one": minires(*ARGS, "--out", folder / "one"),
            "two": minires(*ARGS, "--nproc", 2, "--out", folder / "two")}
    audit = ["--audit", f"{folder / 'stopped'}:{folder / 'stopped-writes'}"]
    runs["stopped"] = on_two_ranks(*ARGS, "--out", folder / "stopped",
                                   options=["--signal", "1:2:SIGINT", *audit])
    shutil.copytree(folder / "stopped", folder / "stopped1")
    runs["resumed2"] = on_two_ranks("train", "--resume", folder / "stopped" / "checkpoint.mr",
                                    "--no-progress", options=audit[:1] + [
                                        f"{folder / 'stopped'}:{folder / 'resumed-writes'}"])
    runs["resumed1"] = minires("train", "--resume", folder / "stopped1" / "checkpoint.mr",
                               "--no-progress")
    return folder, runs


def test_cli_two_ranks_equal_one_process_with_the_same_global_batch(cli):
    folder, runs = cli
    for name in ("one", "two"):
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
    assert largest_difference(state(folder / "two"), state(folder / "one")) < FLOAT32_WEIGHTS
    assert_same_metrics(metrics(folder / "two"), metrics(folder / "one"), FLOAT32_METRICS)


def test_cli_states_the_global_batch_and_learning_rate_once(cli):
    _, runs = cli
    out = runs["two"].stdout
    assert out.count("data-parallel on 2 ranks: global batch 32 = 2 ranks x 16, lr 0.05") == 1
    assert "SyncBatchNorm: statistics of the global batch" in out
    assert out.count("test accuracy:") == 1  # rank 0 alone prints
    assert "minires: starting 2 processes with mpiexec" in runs["two"].stderr
    assert "data-parallel" not in runs["one"].stdout


def test_cli_only_rank0_writes_files(cli):
    folder, runs = cli
    assert runs["resumed2"].returncode == 0, runs["resumed2"].stderr[-3000:]
    for job in ("stopped", "resumed"):
        rank0 = json.loads((folder / f"{job}-writes.rank0.json").read_text())
        rank1 = json.loads((folder / f"{job}-writes.rank1.json").read_text())
        assert rank1 == [], f"rank 1 wrote during the {job} run: {rank1}"
        assert any(path.endswith("checkpoint.mr") for _, path in rank0)  # the record works
    assert sorted(os.listdir(folder / "stopped")) == ["checkpoint.mr", "curves.png",
                                                      "metrics.jsonl"]


def test_cli_sigint_to_one_rank_stops_both_and_the_checkpoint_resumes_exactly(cli):
    folder, runs = cli
    stopped = runs["stopped"]
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    line = "minires: interrupted (SIGINT) at epoch 1, after step 2 of 3: checkpoint saved"
    assert stopped.stderr.count(line) == 1  # rank 0 says it, once
    # resumed by 2 ranks: bit for bit the uninterrupted run; by 1: up to rounding
    assert largest_difference(state(folder / "stopped"), state(folder / "two")) == 0.0
    assert metrics(folder / "stopped") == [
        {**row, "seconds": got["seconds"], "images_per_s": got["images_per_s"]}
        for row, got in zip(metrics(folder / "two"), metrics(folder / "stopped"))]
    assert runs["resumed1"].returncode == 0, runs["resumed1"].stderr[-3000:]
    assert largest_difference(state(folder / "stopped1"), state(folder / "two")) < \
        FLOAT32_WEIGHTS
    assert_same_metrics(metrics(folder / "stopped1"), metrics(folder / "two"),
                        FLOAT32_METRICS)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind, status, message", [
    ("bug", 1, "[rank 1/2] RuntimeError: deliberate failure on rank 1 after step 2"),
    ("user", 2, "[rank 1/2] minires: error: deliberate mistake on rank 1 after step 2"),
])
def test_cli_an_exception_on_one_rank_ends_both_with_its_message(tmp_path, kind, status,
                                                                  message):
    job = on_two_ranks(*ARGS, "--out", tmp_path, options=["--raise", f"1:2:{kind}"])
    assert job.returncode == status, job.stderr[-3000:]
    assert message in job.stderr
    assert "test accuracy" not in job.stdout  # rank 0 did not carry on


def test_cli_a_setup_error_on_one_rank_ends_both_with_its_message(tmp_path):
    job = on_two_ranks(*ARGS, "--out", tmp_path, options=[
        "--rank-args", f"1:--dataset cifar10 --data-root {tmp_path / 'nothing'}"])
    assert job.returncode == 2, job.stderr[-3000:]
    lines = [line for line in job.stderr.splitlines() if line.startswith("minires: error:")]
    assert len(lines) == 1 and lines[0].startswith("minires: error: rank 1: CIFAR-10 (train) "
                                                   "not found"), job.stderr
    assert "MPI_Abort" not in job.stderr  # every rank stopped by itself


def test_cli_mismatched_settings_are_refused_at_start(tmp_path):
    job = on_two_ranks(*ARGS, "--out", tmp_path, options=["--rank-args", "1:--lr 0.2"])
    assert job.returncode == 2, job.stderr[-3000:]
    assert "minires: error: a setting of minires train differs between ranks: lr is 0.2 on " \
           "rank 1 but 0.05 on rank 0" in job.stderr
    assert not os.path.exists(tmp_path / "checkpoint.mr")
