"""The ``minires`` command as a user meets it: one-line errors (exit 2), runs that never
mix, resuming with another --epochs, fine-tuning reports, and Ctrl-C / SIGTERM sent
to a real ``minires train`` process at varied moments, resumed bit for bit."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_resume import assert_same_run, signal_on_call

import minires as mr
from minires.models import get_model, list_models
from minires.optim import SGD
from minires.tools.cli import main
from minires.train import ConfigError, load_checkpoint
from minires.train.recipe import make_scheduler, replan_schedule
from minires.train.state import RunState

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# 3 steps per epoch on the CIFAR-10 sample, with random crops and flips
QUICK = ["--model", "mlp", "--dataset", "cifar10-sample", "--limit-train", "96",
         "--batch-size", "32", "--lr", "0.02", "--no-progress"]
# 20 steps per epoch: long enough for a signal sent from outside to land mid-epoch
LONGER = ["--model", "mlp", "--dataset", "cifar10-sample", "--limit-train", "640",
          "--batch-size", "32", "--lr", "0.02", "--no-progress"]
LONGEST = ["--model", "mlp", "--dataset", "cifar10-sample", "--batch-size", "32", "--lr",
           "0.02", "--no-progress"]  # all 2,000 images: 63 steps per epoch


def run_cli(args, capsys):
    """main(args) in this process -> (exit status, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("minires: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """An uninterrupted 2-epoch QUICK run (its folder)."""
    out = tmp_path_factory.mktemp("quick") / "run"
    main(["train", *QUICK, "--epochs", "2", "--out", str(out)])
    return out


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args, fragments", [
    (["train", "--epochs", "0"], ["--epochs", "got 0"]),
    (["train", "--limit-train", "-5"], ["--limit-train", "got -5"]),
    (["train", "--lr", "nan"], ["--lr", "nan"]),
    (["train", "--lr", "0"], ["--lr", "> 0"]),
    (["train", "--lr", "inf"], ["--lr"]),
    (["train", "--batch-size", "0"], ["--batch-size"]),
    (["train", "--momentum", "-0.5"], ["--momentum"]),
    (["train", "--weight-decay", "-1"], ["--weight-decay"]),
    (["train", "--seed", "-1"], ["--seed"]),
    (["train", "--warmup-epochs", "3", "--epochs", "3"], ["--warmup-epochs"]),
    (["train", "--schedule", "onecycle", "--warmup-epochs", "1"], ["onecycle"]),
    (["train", "--freeze"], ["--freeze needs --init-from"]),
    (["train", "--model", "resnet21"], ["resnet21", "mlp"]),
    (["train", "--dataset", "imagenet"], ["imagenet", "cifar10"]),
    (["train", "--device", "tpu"], ["--device", "tpu"]),
    (["train", "--model", "resnet18", "--dataset", "mnist-sample"], ["resnet18", "1 channels"]),
    (["train", "--epochs", "x"], ["--epochs", "'x'"]),
    (["train", "--no-such-option"], ["--no-such-option"]),
    (["train", "--resume", "missing.mr"], ["missing.mr"]),
    (["train", "--init-from", "missing.mr"], ["missing.mr"]),
    (["eval", "--checkpoint", "missing.mr"], ["missing.mr"]),
    (["eval"], ["--checkpoint"]),
    (["teach"], ["teach"]),
    (["demo", "--steps", "0"], ["--steps"]),
])
def test_user_errors_are_one_line_and_exit_2(args, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "runs").exists()  # nothing written, nothing claimed


def test_damaged_checkpoint_and_missing_data_name_the_file(capsys, tmp_path):
    damaged = tmp_path / "damaged.mr"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    for args in (["train", "--resume", str(damaged)], ["eval", "--checkpoint", str(damaged)],
                 ["train", "--init-from", str(damaged), *QUICK]):
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, str(damaged))
    code, _, err = run_cli(["train", "--dataset", "cifar10", "--data-root",
                            str(tmp_path / "empty"), "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, str(tmp_path / "empty"))


def test_a_diverging_run_stops_with_one_line_and_exit_1(capsys, tmp_path):
    code, out, err = run_cli(["train", *QUICK, "--epochs", "2", "--lr", "1e6", "--out",
                              str(tmp_path)], capsys)
    assert code == 1 and err.startswith("minires: error: the training loss became")
    assert err.count("\n") == 1 and "epoch 1" in err and "test accuracy" not in out
    assert not (tmp_path / "checkpoint.mr").exists()


def test_every_model_name_that_an_error_offers_builds_and_runs(capsys, tmp_path):
    _, _, err = run_cli(["train", "--model", "nope", "--out", str(tmp_path)], capsys)
    offered = err.split("is not one of: ")[1].split(" (")[0].strip().split(", ")
    assert set(offered) == set(list_models()) and "mlp" in offered
    models = {name: get_model(name).eval() for name in offered}  # each builds by name
    for name in ("mlp", "residual_mlp", "resnet20", "plain20"):  # and the small ones run
        shape = (1, 1, 28, 28) if name.endswith("mlp") else (1, 3, 32, 32)
        with mr.no_grad():
            assert models[name](mr.randn(*shape)).shape == (1, 10), name


def test_mlp_trains_from_the_command_line(quick_run):
    rows = [json.loads(line) for line in open(quick_run / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]


# --------------------------------------------------------------------------- run folders


def test_a_fresh_run_refuses_a_folder_holding_another_run(quick_run, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(quick_run, copy)
    before = (copy / "checkpoint.mr").read_bytes()
    code, _, err = run_cli(["train", *QUICK, "--epochs", "1", "--out", str(copy)], capsys)
    assert_one_line_error(code, err, "already holds", "--resume", "--overwrite")
    assert (copy / "checkpoint.mr").read_bytes() == before
    code, _, _ = run_cli(["train", *QUICK, "--epochs", "1", "--out", str(copy),
                          "--overwrite"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in open(copy / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1]  # the old run's lines are gone, not mixed
    assert load_checkpoint(copy / "checkpoint.mr")["epoch"] == 1


def test_resume_writes_to_out_and_never_to_the_remembered_folder(quick_run, capsys, tmp_path):
    a = tmp_path / "A"
    shutil.copytree(quick_run, a)  # its checkpoint remembers quick_run's folder
    untouched = {p: p.read_bytes() for folder in (quick_run, a) for p in folder.iterdir()}
    code, out, _ = run_cli(["train", "--resume", str(a / "checkpoint.mr"), "--epochs", "3",
                            "--out", str(tmp_path / "B")], capsys)
    assert code == 0 and str(tmp_path / "B") in out
    assert {p: p.read_bytes() for p in untouched} == untouched
    rows = [json.loads(line) for line in open(tmp_path / "B" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # the whole history, then the new epoch
    saved = load_checkpoint(tmp_path / "B" / "checkpoint.mr")
    assert saved["epoch"] == 3 and saved["config"]["out"] == str(tmp_path / "B")
    # without --out: next to the checkpoint resumed from, not where it was first written
    code, _, _ = run_cli(["train", "--resume", str(a / "checkpoint.mr"), "--epochs", "3"],
                         capsys)
    assert code == 0 and load_checkpoint(a / "checkpoint.mr")["epoch"] == 3
    rows = [json.loads(line) for line in open(a / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert {p: p.read_bytes() for p in quick_run.iterdir()} == \
        {p: b for p, b in untouched.items() if p.parent == quick_run}


def test_resume_into_a_folder_of_another_run_is_refused(quick_run, capsys, tmp_path):
    shutil.copytree(quick_run, tmp_path / "other")
    code, _, err = run_cli(["train", "--resume", str(quick_run / "checkpoint.mr"), "--epochs",
                            "3", "--out", str(tmp_path / "other")], capsys)
    assert_one_line_error(code, err, "already holds")


def test_resume_keeps_the_recipe(quick_run, capsys, tmp_path):
    shutil.copytree(quick_run, tmp_path / "r")
    code, _, err = run_cli(["train", "--resume", str(tmp_path / "r" / "checkpoint.mr"),
                            "--epochs", "3", "--lr", "0.5"], capsys)
    assert_one_line_error(code, err, "--lr 0.5", "0.02", "--init-from")
    code, _, _ = run_cli(["train", "--resume", str(tmp_path / "r" / "checkpoint.mr"),
                          "--epochs", "3", "--lr", "0.02", "--model", "mlp"], capsys)
    assert code == 0  # the same values may be repeated


def test_a_gpu_run_resumes_on_the_cpu_when_asked(quick_run, capsys, tmp_path):
    if mr.cuda.is_available():
        pytest.skip("a GPU is here: the run would simply continue on it")
    shutil.copytree(quick_run, tmp_path / "r")
    saved = mr.load(tmp_path / "r" / "checkpoint.mr")
    saved["config"]["device"] = "cuda"  # as if trained on a GPU
    mr.save(saved, tmp_path / "r" / "checkpoint.mr")
    args = ["train", "--resume", str(tmp_path / "r" / "checkpoint.mr"), "--epochs", "3"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--device cuda", "pass --device cpu")
    code, _, _ = run_cli([*args, "--device", "cpu"], capsys)
    assert code == 0


# --------------------------------------------------------------------------- --epochs


def test_resume_with_fewer_epochs_than_done_is_an_error_naming_the_choice(quick_run, capsys):
    code, _, err = run_cli(["train", "--resume", str(quick_run / "checkpoint.mr"),
                            "--epochs", "2"], capsys)
    assert_one_line_error(code, err, "finished 2 epochs", "larger --epochs", "re-planned")


def lrs(config, steps_per_epoch, epochs_run, replan_to=None, at_step=0):
    """The lr of every step: planned for config['epochs'], optionally re-planned for
    ``replan_to`` epochs after ``epochs_run`` epochs and ``at_step`` steps."""
    model = mr.nn.Linear(2, 2)
    optimizer = SGD(model.parameters(), lr=config["lr"], momentum=0.9)
    scheduler, per_batch = make_scheduler(config, optimizer, steps_per_epoch)
    seen = []

    def run_steps(epochs, steps):
        for _ in range(epochs * steps_per_epoch + steps):
            seen.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None and per_batch:
                scheduler.step()
            if len(seen) % steps_per_epoch == 0 and scheduler is not None and not per_batch:
                scheduler.step()

    run_steps(epochs_run, at_step)
    if replan_to is not None:
        run = RunState(epoch=epochs_run + 1, step=at_step)
        scheduler, per_batch = replan_schedule({**config, "epochs": replan_to}, optimizer,
                                               steps_per_epoch, run)
        total = replan_to * steps_per_epoch
        run_steps(0, total - len(seen))
    return seen


@pytest.mark.parametrize("schedule, warmup", [("multistep", 0), ("cosine", 0),
                                              ("onecycle", 0), ("constant", 0),
                                              ("multistep", 2), ("cosine", 1),
                                              ("constant", 2)])
@pytest.mark.parametrize("at_step", [0, 2])
def test_another_epochs_on_resume_replans_the_schedule_from_where_the_run_stands(
        schedule, warmup, at_step):
    config = {"schedule": schedule, "warmup_epochs": warmup, "lr": 0.1, "epochs": 4}
    if schedule != "onecycle" and at_step:
        at_step = 0  # epoch schedules only move between epochs: the same case
    for longer in (8, 5):
        planned_so = lrs({**config, "epochs": longer}, 3, longer)
        replanned = lrs(config, 3, 3, replan_to=longer, at_step=at_step)
        done = 3 * 3 + at_step
        assert replanned[:done] == lrs(config, 3, 4)[:done]  # the past is the old plan's
        np.testing.assert_allclose(replanned[done:], planned_so[done:], rtol=1e-12,
                                   err_msg=f"{schedule} warmup {warmup}")


def test_warmup_then_the_paper_milestones_at_50_and_75_percent():
    config = {"schedule": "multistep", "warmup_epochs": 2, "lr": 0.1, "epochs": 8}
    per_epoch = lrs(config, 1, 8)
    np.testing.assert_allclose(per_epoch, [0.01, 0.055, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = lrs({**config, "schedule": "cosine"}, 1, 8)
    assert cosine[2] == pytest.approx(0.1) and cosine[-1] < 0.01  # annealed by the end


def test_longer_epochs_on_resume_say_so_and_onecycle_trains_on(quick_run, capsys, tmp_path):
    out = tmp_path / "r"
    main(["train", *QUICK, "--schedule", "onecycle", "--epochs", "2", "--out", str(out)])
    capsys.readouterr()
    code, printed, err = run_cli(["train", "--resume", str(out / "checkpoint.mr"),
                                  "--epochs", "4"], capsys)
    assert code == 0, err
    assert "re-planned for 4 epochs" in printed and "the checkpoint planned 2" in printed
    saved = load_checkpoint(out / "checkpoint.mr")
    assert saved["epoch"] == 4 and saved["config"]["epochs"] == 4


# --------------------------------------------------------------------------- fine-tuning


def test_init_from_reports_what_it_loaded(quick_run, capsys, tmp_path):
    code, printed, _ = run_cli(["train", *QUICK, "--epochs", "1", "--init-from",
                                str(quick_run / "checkpoint.mr"), "--freeze", "--out",
                                str(tmp_path / "ft")], capsys)
    assert code == 0
    total = len(get_model("mlp", in_features=3072).state_dict())
    # a run on the same classes: its trained head comes too (a new task's starts fresh:
    # tests/test_finetune.py)
    assert f"loaded {total} of {total} tensors, the classifier head 'fc' too" in printed


def test_init_from_another_architecture_is_an_error_counting_the_match(quick_run, capsys,
                                                                       tmp_path):
    code, _, err = run_cli(["train", "--model", "resnet20", "--dataset", "cifar10-sample",
                            "--init-from", str(quick_run / "checkpoint.mr"), "--freeze",
                            "--out", str(tmp_path / "ft")], capsys)
    assert_one_line_error(code, err, "do not fit", "0 of", "missing", "unexpected")
    assert not (tmp_path / "ft" / "checkpoint.mr").exists()


def test_init_from_a_state_dict_file_and_a_shape_mismatch(quick_run, tmp_path):
    from minires.train.recipe import init_from

    state = load_checkpoint(quick_run / "checkpoint.mr")["model"]
    mr.save(state, tmp_path / "weights.mr")
    model = get_model("mlp", num_classes=4, in_features=3072)
    report = init_from(model, tmp_path / "weights.mr", freeze=True)
    assert (report.loaded, report.total, report.head) == (len(state) - 2, len(state), "fc")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight",
                                                                           "fc.bias"]
    with pytest.raises(ConfigError, match=r"of other shapes \(layers.0.fc.weight"):
        init_from(get_model("mlp", in_features=784), tmp_path / "weights.mr", freeze=False)


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_in_the_command_saves_and_resumes_bit_for_bit(sig, status, quick_run, capsys,
                                                             tmp_path, monkeypatch):
    out = tmp_path / "run"
    signal_on_call(monkeypatch, mr.Tensor, "backward", 5, sig=sig)  # epoch 2, step 2
    code, _, err = run_cli(["train", *QUICK, "--epochs", "2", "--out", str(out)], capsys)
    monkeypatch.undo()
    assert code == status and "Traceback" not in err
    name = signal.Signals(sig).name
    assert f"interrupted ({name}) at epoch 2, after step 2 of 3" in err
    assert f"--resume {out / 'checkpoint.mr'}" in err
    code, _, _ = run_cli(["train", "--resume", str(out / "checkpoint.mr")], capsys)
    assert code == 0
    assert_same_run(quick_run, out)


def minires_process(args):
    return subprocess.Popen([sys.executable, "-m", "minires", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, process, seconds=300):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)


@pytest.fixture(scope="module")
def longer_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("longer") / "run"
    process = minires_process(["train", *LONGER, "--epochs", "2", "--out", str(out)])
    assert process.wait(timeout=600) == 0, process.communicate()
    return out


def lines(path):
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.parametrize("sig, status", [
    (signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_a_signal_to_a_real_process_mid_epoch_resumes_bit_for_bit(sig, status, longer_run,
                                                                  tmp_path):
    out = tmp_path / "run"
    process = minires_process(["train", *LONGER, "--epochs", "2", "--out", str(out)])
    wait_for(lambda: lines(out / "metrics.jsonl") >= 1, process)  # epoch 2 has begun
    process.send_signal(sig)
    _, err = process.communicate(timeout=300)
    assert process.returncode == status, err
    assert "continue with --resume" in err and "Traceback" not in err
    saved = load_checkpoint(out / "checkpoint.mr")
    assert saved["run"]["epoch"] == 2
    resumed = minires_process(["train", "--resume", str(out / "checkpoint.mr")])
    assert resumed.wait(timeout=600) == 0, resumed.communicate()
    assert_same_run(longer_run, out)


@pytest.fixture(scope="module")
def longest_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("longest") / "run"
    process = minires_process(["train", *LONGEST, "--epochs", "3", "--out", str(out)])
    assert process.wait(timeout=600) == 0, process.communicate()
    return out


@pytest.mark.slow
def test_signals_at_random_moments_resume_bit_for_bit_however_often(longest_run, tmp_path):
    """Interrupt the same run again and again at random moments (during training,
    evaluation or a checkpoint's writing) until it finishes; it must end exactly as the
    uninterrupted run did."""
    rng = random.Random(0)
    out, stops = tmp_path / "run", 0
    args = ["train", *LONGEST, "--epochs", "3", "--out", str(out)]
    while True:
        process = minires_process(args)
        wait_for(lambda p=process: p.stdout.readline().startswith(("training", "resuming")),
                 process)
        time.sleep(rng.uniform(0.05, 1.0))
        process.send_signal(rng.choice([signal.SIGINT, signal.SIGTERM]))
        _, err = process.communicate(timeout=300)
        if process.returncode == 0:  # finished first (a signal while it plotted: too)
            break
        assert process.returncode in (130, 143), err
        stops += 1
        args = ["train", "--resume", str(out / "checkpoint.mr")]
    assert stops >= 1
    assert_same_run(longest_run, out)
