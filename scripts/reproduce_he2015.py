"""Reproduce He et al. (2015), "Deep Residual Learning for Image Recognition", CIFAR-10
(section 4.2, Table 6 and Figure 6) on one GPU with minires's own training recipe, in
calls of at most ten minutes each.

    python scripts/reproduce_he2015.py --device cuda --data-root DATA  # one call; repeat
    python scripts/reproduce_he2015.py --models all --device cuda      # all nets of the paper
    python scripts/reproduce_he2015.py --dry-run                       # plan, where it stands
    python scripts/reproduce_he2015.py --smoke                         # 1 short CPU run

Each call trains for at most ``--time-budget`` seconds (default 540: a 10-minute call
with a minute to spare for start-up, the last step and the checkpoint), stops at a
step boundary, saves, and exits with status 3; the next call, with the same command,
continues exactly where it stopped, on this machine or on a fresh one: everything it
needs is in the output folder (the data comes from ``--data-root``). The models are
trained one after the other; when the last one is done, the call writes the table and
the figure and exits with status 0. Where the calls were cut does not change any
number: every run resumes bit for bit (random draws are keyed by seed, epoch and step).
A driver loop:

    until python scripts/reproduce_he2015.py --device cuda --data-root DATA; do
        [ $? -eq 3 ] || break
    done

Exit statuses: 0 finished (table and figure written), 3 stopped to be continued (time
budget, SIGTERM or Ctrl-C: checkpoint saved; run the same command again), 1 a model's
training failed or a call made no progress (see OUT/progress.json), 2 a usage error (a
bad option, an option that contradicts the plan stored in OUT, a missing data set),
130 a second Ctrl-C (stopped at once; the last checkpoint is kept).

The recipe is ``minires train``'s default, which is the paper's: SGD with momentum 0.9,
weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 50% and 75% of
training, 4-pixel-padded random crops and horizontal flips, 160 epochs (391 steps an
epoch: the paper's 32k/48k/64k iterations are 82/123/164 epochs). Each run is exactly

    minires train --model MODEL --dataset cifar10 --epochs 160 --device cuda --out OUT/MODEL

so a run can also be started, stopped and resumed (``--resume``) by hand.

What the paper reports (test error, CIFAR-10, Table 6): ResNet-20 8.75%, ResNet-32
7.51%, ResNet-44 7.17%, ResNet-56 6.97%, ResNet-110 6.43%; and (Figure 6) plain nets
degrade with depth: plain-56 has higher training AND test error than plain-20, while
ResNet-56 beats ResNet-20.

The output folder OUT holds one folder per model (``minires train``'s checkpoint,
metrics and curves), ``progress.json`` (the plan, which models are done, which is in
progress and what the next call will do; the checkpoints are the authority, the file
their summary), and once every model is done ``table6.md``, ``figure6.png`` (training
and test error per epoch, plain nets and ResNets side by side) and ``degradation.md``.
When a model finishes, one row goes to a results file in the style of
``docs/results.md`` (``--results``, default OUT/results.md): date, device, model,
epochs, wall time summed over the calls, final and best test accuracy, final training
error, and the command. Every number is read from the run; the paper's figures appear
only as the target a row is compared with, labelled "paper". ``--smoke`` rows are
marked as smoke tests.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import platform
import re
import shlex
import sys
import time

# Test error in % and parameters in millions from He et al. (2015), Table 6
# (ResNet-110: best of 5 runs).
PAPER_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97,
               "resnet110": 6.43}
PAPER_PARAMS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
                "resnet110": 1.7}

HEADER = ("| date (UTC) | device | model | epochs | wall time | final test acc | "
          "best test acc | final train error | vs paper | command |\n"
          "|---|---|---|---|---|---|---|---|---|---|\n")

DEFAULT_MODELS = ["resnet20", "resnet56", "plain20", "plain56"]
# Table 6's ResNets and Figure 6's plain nets
ALL_MODELS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
              "plain20", "plain32", "plain44", "plain56"]
TRAIN_IMAGES = {"cifar10": 50_000, "cifar10-sample": 2_000}

FINISHED, FAILED, USAGE, CONTINUE, INTERRUPTED = 0, 1, 2, 3, 130
PROGRESS_FORMAT = "minires-he2015-progress"
DEFAULT_BUDGET_S = 540.0

# What a reproduction computes, fixed by its first call and stored in progress.json.
PLAN_DEFAULTS = {"models": DEFAULT_MODELS, "epochs": 160, "schedule": "multistep",
                 "dataset": "cifar10", "limit_train": None, "batch_size": 128, "seed": 0,
                 "matmul_precision": "highest", "smoke": False}
SMOKE_PLAN = {"models": ["resnet20"], "epochs": 1, "dataset": "cifar10-sample",
              "limit_train": 512, "smoke": True}


class PlanError(ValueError):
    """An option that contradicts the reproduction stored in the output folder."""


# --------------------------------------------------------------------------- small parts


def device_name(device: str) -> str:
    from minires import backend

    if device == "cuda":
        cupy = backend.cupy
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        return "cuda: " + (name.decode() if isinstance(name, bytes) else name)
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def train_command(config: dict) -> str:
    """The ``minires train`` command line that runs ``config``."""
    words = ["minires", "train", "--model", config["model"], "--dataset", config["dataset"],
             "--epochs", str(config["epochs"]), "--device", config["device"],
             "--out", config["out"]]
    if config.get("schedule", "multistep") != "multistep":
        words += ["--schedule", config["schedule"]]
    if config.get("batch_size", 128) != 128:
        words += ["--batch-size", str(config["batch_size"])]
    if config.get("data_root"):
        words += ["--data-root", config["data_root"]]
    if config.get("download"):
        words.append("--download")
    if config.get("limit_train"):
        words += ["--limit-train", str(config["limit_train"])]
    if config.get("seed", 0):
        words += ["--seed", str(config["seed"])]
    if config.get("matmul_precision", "highest") != "highest":
        words += ["--matmul-precision", config["matmul_precision"]]
    return shlex.join(words)


def hours_minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{seconds:.0f}s"


def depth(model: str) -> int:
    """The number in a model's name (resnet56 -> 56), 1 without one: a step's cost
    grows about linearly with it, which is all the pace estimate needs."""
    digits = re.findall(r"\d+", model)
    return int(digits[-1]) if digits else 1


def steps_per_epoch(plan: dict) -> int:
    images = TRAIN_IMAGES[plan["dataset"]]
    if plan["limit_train"]:
        images = min(images, plan["limit_train"])
    return math.ceil(images / plan["batch_size"])


def write_text(path: str, text: str) -> None:
    """Write ``text`` atomically (a reader sees the old file or the new one), then read
    it back to check it."""
    from minires.files import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    with open(path, encoding="utf-8") as f:
        if f.read() != text:
            raise OSError(f"{path}: the file read back differs from what was written")


def append_row(path: str, text: str) -> bool:
    """Add a row to the results table (its header first in a new file), unless that very
    row is there already (a call stopped between writing it and recording that it did).
    The whole file is rewritten atomically. Returns whether the row was added."""
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if text in old:
        return False
    write_text(path, old + (HEADER if not old else "") + text)
    return True


# --------------------------------------------------------------------------- the plan


def model_config(plan: dict, model: str, out: str, call: dict) -> dict:
    """``run_training``'s settings for one model of the plan."""
    return dict(model=model, dataset=plan["dataset"], epochs=plan["epochs"],
                schedule=plan["schedule"], batch_size=plan["batch_size"],
                device=call["device"], data_root=call["data_root"],
                download=call["download"], seed=plan["seed"],
                matmul_precision=plan["matmul_precision"], out=os.path.join(out, model),
                progress=call["progress"], limit_train=plan["limit_train"])


def resolve_plan(given: dict, stored: dict | None, out: str) -> dict:
    """The plan of this reproduction: the stored one (progress.json) if there is one,
    else the defaults; an option given that contradicts the stored plan is an error."""
    if stored is None:
        base = {**PLAN_DEFAULTS, **(SMOKE_PLAN if given.get("smoke") else {})}
        return {**base, **{k: v for k, v in given.items() if v is not None}}
    plan = {**PLAN_DEFAULTS, **stored}
    for key, value in given.items():
        if value is not None and value != plan[key]:
            shown = {"models": ",".join, "smoke": lambda v: "on" if v else "off"}.get(
                key, repr)
            raise PlanError(f"--{key.replace('_', '-')} {shown(value)} differs from the "
                            f"reproduction in {out} ({shown(plan[key])}, stored in its "
                            "progress.json). A reproduction keeps its plan from call to "
                            "call: leave the option out to continue it, or choose another "
                            "--out to start another one")
    return plan


def check_plan(plan: dict) -> None:
    from minires.models import list_models

    unknown = [m for m in plan["models"] if m not in list_models()]
    if unknown:
        raise PlanError(f"--models: unknown model {unknown[0]!r}; the models are: "
                        f"{', '.join(list_models())} (or 'all': {','.join(ALL_MODELS)})")
    if len(set(plan["models"])) != len(plan["models"]):
        raise PlanError(f"--models names a model twice: {','.join(plan['models'])}")
    for key in ("epochs", "batch_size", "limit_train"):
        value = plan[key]
        if value is not None and value < 1:
            raise PlanError(f"--{key.replace('_', '-')} must be >= 1, got {value}")


# --------------------------------------------------------------------------- where a model stands


def model_status(out: str, model: str, plan: dict) -> dict:
    """Where ``model``'s run stands, read from its checkpoint (the authority): 'waiting'
    (not started), 'training' or 'done', with its position and metrics history."""
    from minires.train import load_checkpoint

    path = os.path.join(out, model, "checkpoint.mr")
    steps = steps_per_epoch(plan)
    if not os.path.exists(path):
        return {"model": model, "state": "waiting", "epoch": 1, "step": 0,
                "phase": "train", "steps": steps, "history": [], "global_step": 0}
    checkpoint = load_checkpoint(path)
    stored, expected = checkpoint["config"], {**plan, "model": model}
    for key in ("model", "dataset", "epochs", "schedule", "batch_size", "seed",
                "limit_train"):
        if key in stored and stored[key] != expected[key]:
            raise PlanError(f"{path} was trained with {key} {stored[key]!r}, this "
                            f"reproduction's plan has {expected[key]!r}: it belongs to "
                            "another reproduction; choose another --out")
    run = checkpoint["run"] or {"epoch": checkpoint["epoch"] + 1, "step": 0,
                                "phase": "train"}
    completed = int(run["epoch"]) - 1
    done_steps = steps if run["phase"] == "evaluate" else int(run["step"])
    return {"model": model,
            "state": "done" if completed >= plan["epochs"] else "training",
            "epoch": int(run["epoch"]), "step": int(run["step"]), "phase": run["phase"],
            "steps": steps, "history": list(checkpoint["history"]),
            "global_step": completed * steps + done_steps}


def advance(status: dict) -> tuple:
    """How far a run has come, comparable: (epochs completed, evaluating?, step); the end
    of an epoch's last step, its evaluation and the next epoch are three positions."""
    if status["state"] == "waiting":
        return (0, 0, 0)
    return (status["epoch"] - 1, int(status["phase"] == "evaluate"), status["step"])


def position(status: dict, epochs: int) -> str:
    """'epoch 41/160, step 120 of 391' and the like."""
    if status["state"] == "waiting":
        return "not started"
    if status["state"] == "done":
        return f"all {epochs} epochs done"
    where = f"epoch {status['epoch']}/{epochs}"
    if status["phase"] == "evaluate":
        return where + ", before its evaluation"
    if status["step"]:
        return where + f", step {status['step']} of {status['steps']}"
    return where


def observed(status: dict) -> dict:
    history = status["history"]
    return {"final_test_acc": history[-1]["test_acc"],
            "best_test_acc": max(row["test_acc"] for row in history),
            "final_train_error": 1 - history[-1]["train_acc"]}


def next_action(statuses: list, record: dict, plan: dict) -> str:
    for status in statuses:
        model = status["model"]
        entry = record["models"].get(model, {})
        if status["state"] == "done":
            continue
        if "error" in entry:
            where = "the start" if status["state"] == "waiting" else \
                position(status, plan["epochs"])
            return f"retry {model} from {where} (it failed: {entry['error']})"
        if status["state"] == "waiting":
            return f"start {model}"
        return f"continue {model} at {position(status, plan['epochs'])}"
    if record.get("status") == "finished":
        return "nothing: the reproduction is finished"
    return "write the table and the figure"


# --------------------------------------------------------------------------- the progress file


def read_progress(out: str) -> dict | None:
    path = os.path.join(out, "progress.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        raise PlanError(f"{path}: not readable as JSON ({error}); the checkpoints are "
                        "intact: move the file away and call again with the plan's "
                        "options to rebuild it") from None
    if not isinstance(record, dict) or record.get("format") != PROGRESS_FORMAT:
        raise PlanError(f"{path}: not the progress file of a reproduction (no "
                        f"'{PROGRESS_FORMAT}' marker)")
    return record


def save_progress(out: str, record: dict, statuses: list, plan: dict) -> None:
    """Refresh the summary from the statuses and write progress.json atomically."""
    models = record["models"]
    for status in statuses:
        entry = models.setdefault(status["model"], {"seconds": 0.0, "calls": 0,
                                                    "devices": []})
        if "error" not in entry:  # a failed model stays 'failed' until it is retried
            entry["state"] = status["state"]
        entry.update(epochs_done=status["epoch"] - 1 if status["state"] != "waiting" else 0,
                     position=position(status, plan["epochs"]))
    training = next((s for s in statuses if s["state"] != "done"), None)
    record.update(
        done=[s["model"] for s in statuses if s["state"] == "done"],
        in_progress=None if training is None or training["state"] == "waiting" else {
            "model": training["model"], "epoch": training["epoch"],
            "epochs": plan["epochs"], "step": training["step"],
            "steps_per_epoch": training["steps"], "phase": training["phase"]},
        waiting=[s["model"] for s in statuses if s["state"] == "waiting"],
        next=next_action(statuses, record, plan))
    write_text(os.path.join(out, "progress.json"), json.dumps(record, indent=1) + "\n")


def plan_command(plan: dict, out: str, device: str, data_root) -> str:
    """The command that continues this reproduction."""
    words = ["python", "scripts/reproduce_he2015.py", "--out", out, "--device", device]
    if data_root:
        words += ["--data-root", data_root]
    return shlex.join(words)


# --------------------------------------------------------------------------- rows and reports


def verdict(model: str, observed: dict, smoke: bool) -> str:
    if smoke:
        return "smoke test, not comparable"
    if model not in PAPER_ERROR:
        return "-"
    target = 100 - PAPER_ERROR[model]
    acc = 100 * observed["final_test_acc"]
    relation = "meets" if acc >= target else f"{target - acc:.2f} points below"
    return f"{relation} paper ({target:.2f}%)"


def row(config: dict, observed: dict, device: str, smoke: bool) -> str:
    """One results row; ``observed`` holds the run's numbers, its ``wall`` seconds and
    the number of ``calls`` it took."""
    wall = hours_minutes(observed["wall"])
    if observed.get("calls", 1) > 1:
        wall += f" over {observed['calls']} calls"
    elif observed.get("calls", 1) == 0:  # trained before the progress file knew of it
        wall += " (training steps only)"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    model = config["model"] + (" (smoke)" if smoke else "")
    percent = {k: f"{100 * observed[k]:.2f}%"
               for k in ("final_test_acc", "best_test_acc", "final_train_error")}
    return (f"| {date} | {device} | {model} | {config['epochs']} | {wall} | "
            f"{percent['final_test_acc']} | {percent['best_test_acc']} | "
            f"{percent['final_train_error']} | {verdict(config['model'], observed, smoke)} | "
            f"`{train_command(config)}` |\n")


def degradation_lines(results: dict) -> list:
    """Deepest against shallowest of the plain nets, and of the ResNets."""
    lines = []
    for family in ("plain", "resnet"):
        members = sorted((m for m in results if re.fullmatch(family + r"\d+", m)), key=depth)
        if len(members) < 2:
            continue
        shallow, deep = members[0], members[-1]
        a, b = results[shallow], results[deep]
        worse = (b["final_train_error"] > a["final_train_error"]
                 and b["final_test_acc"] < a["final_test_acc"])
        lines.append(
            f"{deep} vs {shallow}: train error {100 * b['final_train_error']:.2f}% vs "
            f"{100 * a['final_train_error']:.2f}%, test acc {100 * b['final_test_acc']:.2f}% "
            f"vs {100 * a['final_test_acc']:.2f}%: the deeper net is "
            f"{'WORSE (degradation)' if worse else 'not worse'}")
    return lines


def parameter_count(model: str) -> int:
    from types import SimpleNamespace

    import numpy

    from minires.train.recipe import build_model

    images = SimpleNamespace(data=numpy.empty((0, 3, 32, 32)), classes=list(range(10)))
    return sum(p.data.size for p in build_model(model, images).parameters())


def table_text(plan: dict, statuses: list, devices: list) -> str:
    limit = f", its first {plan['limit_train']} training images" if plan["limit_train"] else ""
    lines = [
        "# He et al. (2015) on CIFAR-10, reproduced with minires\n",
        "Written by `scripts/reproduce_he2015.py` once every run had finished; each "
        "number is read from the runs' metrics, except the paper's (Table 6), labelled "
        "as such.\n",
        f"Plan: {plan['epochs']} epochs, batch {plan['batch_size']}, schedule "
        f"{plan['schedule']}, seed {plan['seed']}, data set {plan['dataset']}{limit}, "
        f"float32 matrix multiplies at precision {plan['matmul_precision']}; trained on "
        f"{'; '.join(devices) or 'unrecorded devices'}."
        + (" A smoke test: not comparable with the paper." if plan["smoke"] else "") + "\n",
        "| model | parameters | final test error | best test error | final train error "
        "| paper's test error | paper's parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for status in statuses:
        model, seen = status["model"], observed(status)
        paper = f"{PAPER_ERROR[model]:.2f}%" if model in PAPER_ERROR else "-"
        paper_params = f"{PAPER_PARAMS[model]:.2f}M" if model in PAPER_PARAMS else "-"
        lines.append(f"| {model} | {parameter_count(model) / 1e6:.2f}M | "
                     f"{100 * (1 - seen['final_test_acc']):.2f}% | "
                     f"{100 * (1 - seen['best_test_acc']):.2f}% | "
                     f"{100 * seen['final_train_error']:.2f}% | {paper} | {paper_params} |")
    lines += ["", "Training error (dashed) and test error (solid) per epoch, as in the "
              "paper's Figure 6: `figure6.png`. Deeper against shallower: "
              "`degradation.md`.", ""]
    return "\n".join(lines)


def draw_figure(statuses: list, path: str) -> None:
    """Figure 6: error per epoch, training dashed and test solid, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = {"plain": "plain networks", "resnet": "ResNets"}
    panels = {}
    for status in statuses:
        family = re.sub(r"\d+$", "", status["model"])
        panels.setdefault(families.get(family, "other models"), []).append(status)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (title, members) in zip(axes[0], panels.items()):
        for index, status in enumerate(members):
            history = status["history"]
            epochs = [h["epoch"] for h in history]
            color = f"C{index}"
            ax.plot(epochs, [100 * (1 - h["train_acc"]) for h in history], "--",
                    color=color, linewidth=1)
            ax.plot(epochs, [100 * (1 - h["test_acc"]) for h in history], "-",
                    color=color, linewidth=2, label=status["model"])
        ax.set(xlabel="epoch", ylabel="error (%)", title=title)
        ax.grid(alpha=0.3)
        ax.legend(title="dashed: training, solid: test")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    from minires.files import atomic_write

    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def write_outputs(out: str, plan: dict, statuses: list, devices: list) -> dict:
    """The table, the figure and the degradation lines, all from the finished runs."""
    lines = degradation_lines({s["model"]: observed(s) for s in statuses})
    files = {"table": "table6.md", "figure": "figure6.png", "degradation": "degradation.md"}
    write_text(os.path.join(out, files["table"]), table_text(plan, statuses, devices))
    draw_figure(statuses, os.path.join(out, files["figure"]))
    write_text(os.path.join(out, files["degradation"]),
               "".join(line + ".\n" for line in lines) or
               "No family (plain-N, resnetN) has two depths in this reproduction.\n")
    return files


def finish_model(out: str, status: dict, record: dict, config: dict, results: str,
                 smoke: bool) -> None:
    """What a finished run still needs, each part done once even when a call stops
    between them: its curves (``fit`` draws them unless a stop came right after the
    last epoch) and its row in the results file."""
    from minires.train import plot_curves

    curves = os.path.join(out, status["model"], "curves.png")
    if not os.path.exists(curves):
        plot_curves(status["history"], curves, title=status["model"])
    entry = record["models"][status["model"]]
    if entry.get("row_appended"):
        return
    if "row" not in entry:
        seen = {**observed(status), "wall": entry["seconds"], "calls": entry["calls"]}
        if not entry["calls"]:
            seen["wall"] = sum(h.get("seconds") or 0.0 for h in status["history"])
        entry["row"] = row(config, seen, " + ".join(entry["devices"]) or "unrecorded",
                           smoke)
        write_text(os.path.join(out, "progress.json"), json.dumps(record, indent=1) + "\n")
    append_row(results, entry["row"])
    entry["row_appended"] = True
    print(entry["row"], end="")


def calls_left(statuses: list, before: dict, seconds: dict, plan: dict,
               budget: float) -> int | None:
    """How many more calls the remaining steps take at this call's pace (steps times
    depth per second of training): an estimate, None when this call trained nothing."""
    work = sum((s["global_step"] - before[s["model"]]) * depth(s["model"])
               for s in statuses if s["model"] in seconds)
    spent = sum(seconds.values())
    if work <= 0 or spent <= 0:
        return None
    total = plan["epochs"] * steps_per_epoch(plan)
    left = sum((total - s["global_step"]) * depth(s["model"]) for s in statuses)
    return max(1, math.ceil(left / (work / spent) / budget))  # an evaluation may be all


# --------------------------------------------------------------------------- one call


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    plan = parser.add_argument_group("the plan (fixed by the first call, stored in "
                                     "OUT/progress.json; later calls may leave it out)")
    plan.add_argument("--models", default=None,
                      help=f"comma-separated (default: {','.join(DEFAULT_MODELS)}); 'all': "
                           f"{','.join(ALL_MODELS)}")
    plan.add_argument("--epochs", type=int, default=None, help="default 160")
    plan.add_argument("--schedule", default=None, choices=["multistep", "cosine", "onecycle"],
                      help="multistep (the default) is the paper's")
    plan.add_argument("--dataset", default=None, choices=sorted(TRAIN_IMAGES),
                      help="cifar10 (the default), or the 2,000-image sample shipped "
                           "with minires, for checks")
    plan.add_argument("--limit-train", type=int, default=None,
                      help="train on the first N images only (checks)")
    plan.add_argument("--batch-size", type=int, default=None,
                      help="default 128, the paper's; smaller only for checks")
    plan.add_argument("--seed", type=int, default=None, help="default 0")
    plan.add_argument("--matmul-precision", choices=["highest", "high"], default=None,
                      help="high: TF32 tensor cores for float32 matrix multiplies "
                           "(default highest)")
    parser.add_argument("--device", default=None,
                        help="default: the previous call's, else cuda (cpu with --smoke); "
                             "a change continues the runs there, no longer bit for bit")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--time-budget", type=float, default=DEFAULT_BUDGET_S,
                        metavar="SECONDS",
                        help=f"stop at the first step boundary after this many seconds "
                             f"(default {DEFAULT_BUDGET_S:.0f}: a 10-minute call with a "
                             "minute for start-up, the last step and the checkpoint)")
    parser.add_argument("--out", default=None,
                        help="one folder per model in here, and progress.json (default: "
                             "runs/he2015, runs/he2015-smoke with --smoke)")
    parser.add_argument("--results", default=None,
                        help="markdown file the rows are appended to (default: OUT/results.md)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and where it stands; train nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script: 1 epoch of resnet20 on 512 images of the "
                             "shipped CIFAR-10 sample, on the CPU unless --device is given")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.time_budget <= 0:
        parser.error(f"--time-budget must be > 0 seconds, got {args.time_budget}")
    return args


def main(argv=None, clock=time.monotonic) -> int:
    """One call. ``clock`` measures the time budget (tests pass a fake one)."""
    start = clock()
    wall_start = time.perf_counter()
    args = parse(argv)
    from minires.serialization import CheckpointError

    out = args.out or ("runs/he2015-smoke" if args.smoke else "runs/he2015")
    models = None
    if args.models is not None:
        models = ALL_MODELS if args.models == "all" else \
            [m.strip() for m in args.models.split(",") if m.strip()]
    given = {"models": models, "epochs": args.epochs, "schedule": args.schedule,
             "dataset": args.dataset, "limit_train": args.limit_train,
             "batch_size": args.batch_size, "seed": args.seed,
             "matmul_precision": args.matmul_precision, "smoke": args.smoke or None}
    try:
        record = read_progress(out)
        plan = resolve_plan(given, record["plan"] if record else None, out)
        check_plan(plan)
        statuses = [model_status(out, m, plan) for m in plan["models"]]
    except (PlanError, CheckpointError) as error:
        print(f"reproduce_he2015: error: {error}", file=sys.stderr)
        return USAGE
    device = args.device or (record or {}).get("device") or ("cpu" if plan["smoke"] else "cuda")
    results = args.results or os.path.join(out, "results.md")
    call = {"device": device, "data_root": args.data_root, "download": args.download,
            "progress": args.progress}
    configs = {m: model_config(plan, m, out, call) for m in plan["models"]}
    if args.dry_run:
        for model, status in zip(plan["models"], statuses):
            print(f"{train_command(configs[model])}    # {position(status, plan['epochs'])}")
        print(f"rows go to {results}; time budget per call {args.time_budget:.0f} s")
        return FINISHED

    from minires import backend

    if device == "cuda" and not backend.cuda.is_available():
        print("reproduce_he2015: --device cuda but no GPU (CuPy missing or no device); "
              "nothing was trained. Use --dry-run to see the plan, --device cpu to train "
              "on the CPU.", file=sys.stderr)
        return FAILED
    try:
        where = device_name(backend.normalize_device(device))
    except ValueError as error:
        print(f"reproduce_he2015: error: --device: {error}", file=sys.stderr)
        return USAGE
    if record is None:
        record = {"format": PROGRESS_FORMAT, "plan": plan, "calls": 0, "models": {}}
    record["calls"] += 1
    record["device"] = device
    record["command"] = plan_command(plan, out, device, args.data_root)
    record["status"] = "running"
    os.makedirs(out, exist_ok=True)
    save_progress(out, record, statuses, plan)
    try:
        return run_call(args, out, plan, record, statuses, configs, results, where, call,
                        lambda: clock() - start, wall_start)
    except KeyboardInterrupt:  # a second Ctrl-C outside training: the checkpoints stand
        print("reproduce_he2015: stopped at once; run again to continue from the last "
              "checkpoints", file=sys.stderr)
        return INTERRUPTED


def run_call(args, out, plan, record, statuses, configs, results, where, call, elapsed,
             wall_start) -> int:
    """Train the models in order until the budget is spent; then write the progress."""
    from minires.data import DatasetError
    from minires.serialization import CheckpointError
    from minires.train import ConfigError, NonFiniteError, TrainingInterrupted, run_training
    from minires.train.interrupt import StopRequest, stop_when

    before = {s["model"]: advance(s) for s in statuses}
    steps_before = {s["model"]: s["global_step"] for s in statuses}
    began_at = {s["model"]: position(s, plan["epochs"]) for s in statuses}
    seconds, did, code, stop_reason = {}, [], CONTINUE, None
    message = "stopping at the next step boundary; the next call continues from there"
    with StopRequest(message=message) as stop, \
            stop_when(lambda: stop.signal is not None, "signal"), \
            stop_when(lambda: elapsed() >= args.time_budget, "time budget"):
        for index, status in enumerate(statuses):
            model, entry = status["model"], record["models"][status["model"]]
            if status["state"] == "done":
                finish_model(out, status, record, configs[model], results, plan["smoke"])
                continue
            if did and stop.requested():  # every call trains something before it stops
                stop_reason = stop.signal
                break
            checkpoint = os.path.join(out, model, "checkpoint.mr")
            resume = {"resume": checkpoint} if status["state"] == "training" else {}
            print(f"\n== {model} ({position(status, plan['epochs'])}) on {where}", flush=True)
            entry.pop("error", None)
            began = time.perf_counter()
            failure = None
            try:
                run_training(**configs[model], **resume)
            except TrainingInterrupted as stopped:
                stop_reason = stopped.signal
            except KeyboardInterrupt:
                stop_reason, code = "a second signal: stopped at once", INTERRUPTED
            except (ConfigError, CheckpointError, DatasetError, OSError, ValueError) as error:
                failure, code = error, USAGE
            except Exception as error:  # NonFiniteError and the unforeseen: the run failed
                failure, code = error, FAILED
            finally:
                spent = time.perf_counter() - began
                seconds[model] = seconds.get(model, 0.0) + spent
                entry["seconds"] += spent
                entry["calls"] += 1
                if where not in entry["devices"]:
                    entry["devices"].append(where)
            statuses[index] = status = model_status(out, model, plan)
            did.append(f"{model}: {began_at[model]} -> {position(status, plan['epochs'])}")
            if failure is not None:
                kind = "" if isinstance(failure, NonFiniteError) else \
                    f"{type(failure).__name__}: "
                text = " ".join(f"{kind}{failure}".split())
                entry.update(state="failed", error=text)
                print(f"{model}: FAILED ({text}); no row written", file=sys.stderr)
                break
            if code == INTERRUPTED:
                break
            if status["state"] != "done":
                break  # stopped by the budget or a signal, checkpoint saved
            save_progress(out, record, statuses, plan)
            finish_model(out, status, record, configs[model], results, plan["smoke"])
    return close_call(args, out, plan, record, statuses, before, steps_before, seconds, did,
                      code, stop_reason, wall_start)


def close_call(args, out, plan, record, statuses, before, steps_before, seconds, did, code,
               stop_reason, wall_start) -> int:
    """Write the outputs if all is done, the progress file, and the call's one line."""
    done = sum(s["state"] == "done" for s in statuses)
    n = len(statuses)
    progressed = any(advance(s) > before[s["model"]] for s in statuses)
    if code == CONTINUE and done == n:
        devices = sorted({d for e in record["models"].values() for d in e["devices"]})
        record["outputs"] = write_outputs(out, plan, statuses, devices)
        record["status"], code = "finished", FINISHED
    elif code == CONTINUE and stop_reason == "time budget" and not progressed:
        code = FAILED
        record["status"] = "no progress"
    else:
        record["status"] = {CONTINUE: "to be continued", INTERRUPTED: "to be continued",
                            USAGE: "failed", FAILED: "failed"}[code]
    estimate = calls_left(statuses, steps_before, seconds, plan, args.time_budget) \
        if code == CONTINUE else None
    record["calls_left_estimate"] = estimate
    took = time.perf_counter() - wall_start
    this_call = f"this call ({took:.0f} s): " + ("; ".join(did) if did else "nothing to train")
    if stop_reason and code in (CONTINUE, INTERRUPTED):
        this_call += f" (stopped: {stop_reason})"
    record["last_call"] = {"did": this_call, "seconds": round(took, 1), "exit_status": code}
    save_progress(out, record, statuses, plan)
    remains = f"{done} of {n} models done"
    current = next((s for s in statuses if s["state"] != "done"), None)
    if current is not None and current["state"] != "waiting":
        remains += f"; {current['model']} at {position(current, plan['epochs'])}"
    if code == FINISHED:
        files = record["outputs"]
        advice = (f"finished: {os.path.join(out, files['table'])}, "
                  f"{os.path.join(out, files['figure'])}")
    elif code == CONTINUE:
        advice = "run again to continue"
        if estimate is not None:
            advice += f" (about {estimate} more calls at this call's pace: an estimate)"
    elif record["status"] == "no progress":
        advice = (f"no progress: --time-budget {args.time_budget:g} s is shorter than "
                  "start-up and one evaluation")
    elif code == INTERRUPTED:
        advice = "stopped at once; run again to continue from the last checkpoint"
    else:
        advice = f"failed; see {os.path.join(out, 'progress.json')}"
    print(f"reproduce_he2015: {this_call}; {remains}; {advice} [exit {code}]", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
