"""scripts/reproduce_he2015.py runs as a sequence of calls, each bounded by a time budget,
and the result does not depend on where the calls were cut: cut mid-epoch, during an
evaluation, between models, by the budget or by a signal, in one process or in a fresh
process per call with the output folder moved between calls, the runs end bit for bit
like one uninterrupted call, and so do the table, the figure and the curves.

The budget is measured by a fake clock that ticks once per look at it (the loop looks
after every step, every evaluation batch and every epoch, the script before each
model), so a budget of N ticks cuts at the same places on every machine."""

import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.train import NonFiniteError, load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "reproduce_he2015.py")
MODELS = ["mlp", "residual_mlp"]
# two models, 2 epochs of 3 steps (96 images, batch 32), evaluations of 2 batches
PLAN = ["--models", ",".join(MODELS), "--dataset", "cifar10-sample", "--limit-train", "96",
        "--batch-size", "32", "--epochs", "2", "--seed", "3"]
TIMING = {"seconds", "images_per_s"}
OUTPUTS = ("table6.md", "degradation.md", "figure6.png")


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce_he2015", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def ticks():
    """A clock that advances by one each time it is read."""
    return itertools.count().__next__


def call(out, budget, device="cpu", extra=(), plan=PLAN):
    argv = [*plan, "--device", device, "--out", str(out), "--no-progress",
            "--time-budget", str(budget), *extra]
    return script.main(argv, clock=ticks())


def progress(out) -> dict:
    with open(os.path.join(out, "progress.json")) as f:
        return json.load(f)


def cut_kind(record: dict) -> str:
    """Where a call that stopped to be continued left the reproduction."""
    current = record["in_progress"]
    if current is None:
        return "between models" if record["done"] and record["waiting"] else "not started"
    if current["phase"] == "evaluate":
        return "during evaluation"
    if current["step"] == current["steps_per_epoch"]:
        return "after an epoch's last step"
    return "mid-epoch" if current["step"] else "between epochs"


def run_to_the_end(out, budget, device="cpu", limit=60, plan=PLAN):
    """Calls until one finishes; returns the kinds of cuts made, in order."""
    kinds = []
    for _ in range(limit):
        code = call(out, budget, device, plan=plan)
        if code == script.FINISHED:
            return kinds
        assert code == script.CONTINUE, f"exit status {code}: {progress(out)['last_call']}"
        kinds.append(cut_kind(progress(out)))
    raise AssertionError(f"not finished after {limit} calls of budget {budget}")


def same(a, b, where):
    """Equal values, arrays bit for bit with their dtypes; timing left out."""
    if isinstance(a, dict):
        a = {k: v for k, v in a.items() if k not in TIMING}
        b = {k: v for k, v in b.items() if k not in TIMING}
        assert a.keys() == b.keys(), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif hasattr(a, "dtype"):
        a, b = backend.to_numpy(a), backend.to_numpy(b)
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def rows_without_timing(out) -> list:
    """The results rows, less the date and the wall time (columns 1 and 5), and the
    output folder in their commands (where the folder was when the model finished)."""
    with open(os.path.join(out, "results.md")) as f:
        rows = [re.sub(r"--out \S+", "--out OUT", line).split(" | ") for line in f
                if line.startswith("| 2")]
    return [cells[1:4] + cells[5:] for cells in rows]


def assert_same_reproduction(a, b, models=MODELS):
    for model in models:
        ca = load_checkpoint(os.path.join(a, model, "checkpoint.mr"))
        cb = load_checkpoint(os.path.join(b, model, "checkpoint.mr"))
        for key in ("epoch", "model", "optimizer", "scheduler", "loader", "rng", "history",
                    "run"):
            same(ca[key], cb[key], f"{model}: {key}")
        metrics = [[json.loads(line) for line in open(os.path.join(f, model, "metrics.jsonl"))]
                   for f in (a, b)]
        same(metrics[0], metrics[1], f"{model}/metrics.jsonl")
        assert read_bytes(os.path.join(a, model, "curves.png")) == \
            read_bytes(os.path.join(b, model, "curves.png")), f"{model}/curves.png"
    for name in OUTPUTS:
        assert read_bytes(os.path.join(a, name)) == read_bytes(os.path.join(b, name)), name
    assert rows_without_timing(a) == rows_without_timing(b)
    assert len(rows_without_timing(b)) == len(models)
    assert progress(b)["status"] == "finished" and progress(b)["done"] == models


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted call."""
    out = tmp_path_factory.mktemp("uninterrupted")
    assert call(out, budget=10**9) == script.FINISHED
    assert progress(out)["calls"] == 1
    return str(out)


def test_calls_cut_mid_epoch_in_evaluation_and_between_models_end_like_one_call(
        reference, tmp_path):
    kinds = []
    for budget in (3, 4):
        out = tmp_path / f"budget-{budget}"
        kinds += run_to_the_end(out, budget)
        assert_same_reproduction(reference, out)
        assert progress(out)["calls"] > 4
    assert set(kinds) == {"mid-epoch", "after an epoch's last step", "during evaluation",
                          "between epochs", "between models"}, kinds


@pytest.mark.slow
def test_conv_nets_with_batch_norm_cut_anywhere_end_like_one_call(tmp_path):
    """plain-20 and ResNet-20 (BatchNorm running statistics, option-A shortcuts)."""
    models = ["plain20", "resnet20"]
    plan = ["--models", ",".join(models), "--dataset", "cifar10-sample", "--limit-train",
            "128", "--batch-size", "32", "--epochs", "1"]
    assert call(tmp_path / "straight", budget=10**9, plan=plan) == script.FINISHED
    kinds = run_to_the_end(tmp_path / "cut", budget=3, plan=plan)
    assert {"mid-epoch", "during evaluation", "between models"} <= set(kinds), kinds
    assert_same_reproduction(str(tmp_path / "straight"), str(tmp_path / "cut"), models)


def test_stop_when_stops_training_at_a_step_boundary_as_a_signal_does(tmp_path):
    """The hook the budget uses: fit stops after the step at which the check turns true,
    saves there, and names the reason."""
    from minires.train import TrainingInterrupted, run_training
    from minires.train.interrupt import stop_when

    looks = itertools.count(1).__next__
    with stop_when(lambda: looks() >= 2, "time budget"), \
            pytest.raises(TrainingInterrupted) as stop:
        run_training(model="mlp", dataset="cifar10-sample", limit_train=96, batch_size=32,
                     epochs=2, progress=False, out=str(tmp_path))
    assert (stop.value.epoch, stop.value.step, stop.value.signal) == (1, 2, "time budget")
    saved = load_checkpoint(tmp_path / "checkpoint.mr")["run"]
    assert (saved["epoch"], saved["step"], saved["phase"]) == (1, 2, "train")
    from minires.train import interrupt

    assert interrupt._CONDITIONS == []  # the block's check is gone with the block


def test_each_call_reports_what_it_did_and_what_remains(tmp_path, capsys):
    assert call(tmp_path, budget=1) == script.CONTINUE  # stops at the first look
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"reproduce_he2015: this call \(\d+ s\): mlp: not started -> epoch "
                        r"1/2, step 1 of 3 \(stopped: time budget\); 0 of 2 models done; mlp "
                        r"at epoch 1/2, step 1 of 3; run again to continue \(about \d+ more "
                        r"calls at this call's pace: an estimate\) \[exit 3\]", line), line
    record = progress(tmp_path)
    assert record["format"] == "minires-he2015-progress" and record["status"] == \
        "to be continued"
    assert record["done"] == [] and record["waiting"] == ["residual_mlp"]
    assert record["in_progress"] == {"model": "mlp", "epoch": 1, "epochs": 2, "step": 1,
                                     "steps_per_epoch": 3, "phase": "train"}
    assert record["next"] == "continue mlp at epoch 1/2, step 1 of 3"
    assert record["plan"]["models"] == MODELS and record["plan"]["epochs"] == 2
    assert record["last_call"]["exit_status"] == 3 and record["calls"] == 1
    saved = load_checkpoint(tmp_path / "mlp" / "checkpoint.mr")["run"]
    assert (saved["epoch"], saved["step"], saved["phase"]) == (1, 1, "train")


def test_fresh_process_per_call_with_the_folder_moved_ends_like_one_call(reference,
                                                                          tmp_path):
    """Each call in a new process, and between calls the folder moves (a fresh machine
    that has only the output folder); later calls leave the plan out."""
    runner = ("import importlib.util, itertools, sys\n"
              "spec = importlib.util.spec_from_file_location('r', sys.argv[1])\n"
              "r = importlib.util.module_from_spec(spec); spec.loader.exec_module(r)\n"
              "sys.exit(r.main(sys.argv[2:], clock=itertools.count().__next__))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out, codes = tmp_path / "machine-0", []
    for n in range(1, 40):
        plan = PLAN if n == 1 else []
        done = subprocess.run([sys.executable, "-c", runner, SCRIPT, *plan, "--device", "cpu",
                               "--out", str(out), "--no-progress", "--time-budget", "9"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        codes.append(done.returncode)
        last = done.stdout.strip().splitlines()[-1]
        assert re.search(r"\d of 2 models done", last), done.stdout + done.stderr
        if done.returncode != script.CONTINUE:
            break
        moved = tmp_path / f"machine-{n}"
        shutil.copytree(out, moved)
        shutil.rmtree(out)
        out = moved
    assert codes[-1] == script.FINISHED and set(codes[:-1]) == {script.CONTINUE}, codes
    assert len(codes) > 2, codes
    assert_same_reproduction(reference, str(out))


def test_a_signal_before_training_stops_after_one_step_and_resumes_exactly(
        reference, tmp_path, monkeypatch):
    """SIGTERM while the script prepares the next model (outside the training loop): the
    call still stops at a step boundary with a checkpoint, and exits to be continued."""
    import minires.train

    original = minires.train.run_training

    def signalled(**settings):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(**settings)

    monkeypatch.setattr(minires.train, "run_training", signalled)
    assert call(tmp_path, budget=10**9) == script.CONTINUE
    monkeypatch.undo()
    record = progress(tmp_path)
    assert record["in_progress"]["step"] == 1 and "stopped: signal" in \
        record["last_call"]["did"]
    assert call(tmp_path, budget=10**9) == script.FINISHED
    assert_same_reproduction(reference, str(tmp_path))


def test_a_run_started_by_hand_with_its_printed_command_is_continued(reference, tmp_path,
                                                                     capsys):
    """The dry run prints each model's `minires train` command; a run started with it
    and stopped is taken up by the next call, and the result is the same."""
    import shlex

    from minires.tools import cli
    from minires.train.interrupt import stop_when

    assert script.main([*PLAN, "--device", "cpu", "--out", str(tmp_path), "--dry-run"]) == 0
    command = capsys.readouterr().out.splitlines()[0].split("    #")[0]
    looks = itertools.count(1).__next__
    with stop_when(lambda: looks() >= 2), pytest.raises(SystemExit) as stopped:
        cli.main([*shlex.split(command)[1:], "--no-progress"])
    assert stopped.value.code == 130  # stopped and saved, as by Ctrl-C
    assert not (tmp_path / "progress.json").exists()
    assert call(tmp_path, budget=10**9) == script.FINISHED
    assert "mlp: epoch 1/2, step 2 of 3 -> all 2 epochs done" in capsys.readouterr().out
    assert_same_reproduction(reference, str(tmp_path))


def test_a_real_time_budget_stops_the_call_to_be_continued(tmp_path):
    argv = [*PLAN, "--device", "cpu", "--out", str(tmp_path), "--no-progress",
            "--time-budget", "0.05"]
    assert script.main(argv) == script.CONTINUE
    record = progress(tmp_path)
    assert record["in_progress"]["model"] == "mlp" and record["status"] == "to be continued"
    assert "stopped: time budget" in record["last_call"]["did"]


def test_an_option_that_contradicts_the_stored_plan_is_refused(tmp_path, capsys):
    assert call(tmp_path, budget=2) == script.CONTINUE
    capsys.readouterr()
    assert call(tmp_path, budget=2, plan=[*PLAN, "--epochs", "5"]) == script.USAGE
    error = capsys.readouterr().err
    assert "--epochs 5 differs from the reproduction in" in error and "(2, stored in its " \
        "progress.json)" in error
    assert progress(tmp_path)["calls"] == 1  # nothing was done


def test_a_checkpoint_of_another_recipe_in_the_folder_is_refused(tmp_path, capsys):
    assert call(tmp_path, budget=2) == script.CONTINUE
    os.remove(tmp_path / "progress.json")  # the plan now comes from the options alone
    capsys.readouterr()
    other = [p if p != "32" else "16" for p in PLAN]  # --batch-size 16
    assert call(tmp_path, budget=2, plan=other) == script.USAGE
    assert "was trained with batch_size 32, this reproduction's plan has 16" in \
        capsys.readouterr().err


def test_a_failed_model_stops_the_call_and_the_next_call_retries_it(reference, tmp_path,
                                                                    monkeypatch):
    import minires.train

    def diverges(**settings):
        raise NonFiniteError("the training loss became nan at epoch 1, step 2", epoch=1,
                             step=2)

    monkeypatch.setattr(minires.train, "run_training", diverges)
    assert call(tmp_path, budget=10**9) == script.FAILED
    monkeypatch.undo()
    record = progress(tmp_path)
    assert record["status"] == "failed" and record["models"]["mlp"]["state"] == "failed"
    assert record["next"] == "retry mlp from the start (it failed: the training loss " \
        "became nan at epoch 1, step 2)"
    assert call(tmp_path, budget=10**9) == script.FINISHED
    assert progress(tmp_path)["models"]["mlp"]["state"] == "done"
    assert_same_reproduction(reference, str(tmp_path))


def test_a_budget_too_short_for_one_evaluation_is_no_progress_not_a_loop(tmp_path, capsys):
    for _ in range(10):  # one look per call: step by step up to the first evaluation
        assert call(tmp_path, budget=1) == script.CONTINUE
        if progress(tmp_path)["in_progress"]["phase"] == "evaluate":
            break
    capsys.readouterr()
    assert call(tmp_path, budget=1) == script.FAILED
    assert "no progress: --time-budget 1 s is shorter than start-up and one evaluation" in \
        capsys.readouterr().out
    assert progress(tmp_path)["status"] == "no progress"


def test_a_finished_reproduction_does_nothing_more(reference, tmp_path, capsys):
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    before = read_bytes(tmp_path / "results.md")
    assert call(tmp_path, budget=10**9, plan=[]) == script.FINISHED
    assert "nothing to train; 2 of 2 models done; finished" in capsys.readouterr().out
    assert read_bytes(tmp_path / "results.md") == before  # no row twice
    assert_same_reproduction(reference, str(tmp_path))


def test_a_row_is_appended_once_even_when_a_call_stopped_after_writing_it(tmp_path):
    results = str(tmp_path / "results.md")
    row = "| 2026-01-01 | cpu | mlp | 2 | 1s | 1.00% | 1.00% | 1.00% | - | `x` |\n"
    assert script.append_row(results, row) is True
    assert script.append_row(results, row) is False
    assert read_bytes(results).decode() == script.HEADER + row


def test_dry_run_prints_each_models_command_and_position_and_writes_nothing(tmp_path,
                                                                             capsys):
    assert call(tmp_path, budget=1) == script.CONTINUE
    before = read_bytes(tmp_path / "progress.json")
    capsys.readouterr()
    assert script.main(["--out", str(tmp_path), "--dry-run"]) == script.FINISHED
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("minires train --model mlp --dataset cifar10-sample "
                               "--epochs 2 --device cpu") and \
        lines[0].endswith("# epoch 1/2, step 1 of 3")
    assert lines[1].endswith("# not started")
    assert read_bytes(tmp_path / "progress.json") == before


@pytest.mark.cuda
def test_on_the_gpu_path_calls_cut_anywhere_end_like_one_call(tmp_path):
    """The same on --device cuda (a GPU, or the CuPy stand-in), against an uninterrupted
    call on that device."""
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    assert call(tmp_path / "straight", budget=10**9, device="cuda") == script.FINISHED
    kinds = run_to_the_end(tmp_path / "cut", budget=4, device="cuda")
    assert {"mid-epoch", "during evaluation", "between models"} <= set(kinds), kinds
    assert_same_reproduction(str(tmp_path / "straight"), str(tmp_path / "cut"))
