"""Reproduce He et al. (2015), "Deep Residual Learning for Image Recognition", CIFAR-10
(section 4.2, Table 6 and Figure 6) on one GPU with minires's own training recipe.

    python scripts/reproduce_he2015.py --device cuda --download            # all four runs
    python scripts/reproduce_he2015.py --models resnet20 --device cuda      # one run
    python scripts/reproduce_he2015.py --dry-run                            # the plan only
    python scripts/reproduce_he2015.py --smoke                              # 1 short CPU run

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

After each run the script appends one row to a results file in the style of
``docs/results.md``: date, device, model, epochs, wall time, final and best test
accuracy, final training error, and the command. Every number in a row is read from the
run that just finished (its metrics history and a wall clock around it); a run that
fails or is interrupted writes no row. The paper's figures appear only as the target a
row is compared with, labelled "paper". ``--smoke`` rows are marked as smoke tests.
When both plain-20 and plain-56 (or both ResNets) finished, the comparison of the pair
goes to ``OUT/degradation.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time

# Test error in % from He et al. (2015), Table 6 (ResNet-110: best of 5 runs).
PAPER_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97,
               "resnet110": 6.43}

HEADER = ("| date (UTC) | device | model | epochs | wall time | final test acc | "
          "best test acc | final train error | vs paper | command |\n"
          "|---|---|---|---|---|---|---|---|---|---|\n")


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


def run_one(config: dict) -> dict:
    """Train as configured; return only what was observed."""
    from minires.train import load_checkpoint, run_training

    checkpoint = os.path.join(config["out"], "checkpoint.mr")
    if os.path.exists(checkpoint):  # an earlier invocation stopped: continue it
        done = load_checkpoint(checkpoint)["epoch"]
        if done >= config["epochs"]:
            raise FileExistsError(f"{checkpoint} has finished {done} epochs already; its "
                                  "numbers are in metrics.jsonl beside it. Use another --out "
                                  "to train again")
        config = {**config, "resume": checkpoint}
    start = time.perf_counter()
    result = run_training(**config)
    wall = time.perf_counter() - start
    history = result["history"]
    if not history or history[-1]["epoch"] != config["epochs"]:
        raise RuntimeError(f"{config['model']}: the run ended without finishing "
                           f"{config['epochs']} epochs")
    return {"wall": wall, "resumed": "resume" in config,
            "first_epoch_here": history[0]["epoch"], "history": history,
            "final_test_acc": history[-1]["test_acc"],
            "best_test_acc": max(row["test_acc"] for row in history),
            "final_train_error": 1 - history[-1]["train_acc"],
            "train_seconds": sum(row["seconds"] for row in history)}


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
    wall = hours_minutes(observed["wall"])
    if observed["resumed"]:  # this invocation ran only part of the epochs
        wall += (f" (this invocation, resumed; epochs 1-{config['epochs']} train "
                 f"{hours_minutes(observed['train_seconds'])})")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    model = config["model"] + (" (smoke)" if smoke else "")
    percent = {k: f"{100 * observed[k]:.2f}%"
               for k in ("final_test_acc", "best_test_acc", "final_train_error")}
    return (f"| {date} | {device} | {model} | {config['epochs']} | {wall} | "
            f"{percent['final_test_acc']} | {percent['best_test_acc']} | "
            f"{percent['final_train_error']} | {verdict(config['model'], observed, smoke)} | "
            f"`{train_command(config)}` |\n")


def append_text(path: str, text: str) -> None:
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)


def append(path: str, text: str) -> None:
    """Append a row to the results table, writing the table's header into a new file."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    append_text(path, (HEADER if new else "") + text)


def degradation_line(observed: dict, device: str) -> str | None:
    """Plain-20 vs plain-56 (and ResNet-20 vs ResNet-56), from runs finished just now."""
    lines = []
    for shallow, deep in (("plain20", "plain56"), ("resnet20", "resnet56")):
        if shallow in observed and deep in observed:
            a, b = observed[shallow], observed[deep]
            worse = (b["final_train_error"] > a["final_train_error"]
                     and b["final_test_acc"] < a["final_test_acc"])
            lines.append(
                f"{deep} vs {shallow}: train error {100 * b['final_train_error']:.2f}% vs "
                f"{100 * a['final_train_error']:.2f}%, test acc {100 * b['final_test_acc']:.2f}% "
                f"vs {100 * a['final_test_acc']:.2f}%: the deeper net is "
                f"{'WORSE (degradation)' if worse else 'not worse'}")
    if not lines:
        return None
    return f"On {device}: " + "; ".join(lines) + ".\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--models", default="resnet20,resnet56,plain20,plain56",
                        help="comma-separated (default: resnet20,resnet56,plain20,plain56)")
    parser.add_argument("--epochs", type=int, default=160)
    parser.add_argument("--schedule", default="multistep",
                        choices=["multistep", "cosine", "onecycle"],
                        help="multistep is the paper's")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matmul-precision", choices=["highest", "high"], default="highest",
                        help="high: TF32 tensor cores for float32 matrix multiplies")
    parser.add_argument("--out", default=None,
                        help="one folder per model in here (default: runs/he2015, "
                             "runs/he2015-smoke with --smoke)")
    parser.add_argument("--results", default=None,
                        help="markdown file the rows are appended to (default: OUT/results.md)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script: 1 epoch of resnet20 on 512 images of the "
                             "shipped CIFAR-10 sample, on the CPU unless --device is given")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)

    if args.smoke:
        argv = list(argv if argv is not None else sys.argv[1:])
        args.models, args.epochs = "resnet20", 1
        if "--device" not in argv:
            args.device = "cpu"
    dataset = "cifar10-sample" if args.smoke else "cifar10"
    args.out = args.out or ("runs/he2015-smoke" if args.smoke else "runs/he2015")
    results = args.results or os.path.join(args.out, "results.md")
    configs = [dict(model=m, dataset=dataset, epochs=args.epochs, schedule=args.schedule,
                    device=args.device, data_root=args.data_root, download=args.download,
                    seed=args.seed, matmul_precision=args.matmul_precision,
                    out=os.path.join(args.out, m), progress=args.progress,
                    limit_train=512 if args.smoke else None)
               for m in args.models.split(",")]
    for config in configs:
        print(train_command(config))
    print(f"rows go to {results}")
    if args.dry_run:
        return 0

    from minires import backend

    if args.device == "cuda" and not backend.cuda.is_available():
        print("reproduce_he2015: --device cuda but no GPU (CuPy missing or no device); "
              "nothing was trained. Use --dry-run to see the plan.")
        return 1
    device = device_name(backend.normalize_device(args.device))
    observed, failed = {}, []
    for config in configs:
        print(f"\n== {config['model']} on {device}")
        try:
            observed[config["model"]] = run_one({k: v for k, v in config.items()})
        except KeyboardInterrupt:
            print(f"{config['model']}: interrupted; no row written. Run the same command "
                  "again to resume from its checkpoint.")
            return 130
        except Exception as error:  # report, write no row, go on with the next model
            print(f"{config['model']}: FAILED ({type(error).__name__}: {error}); no row written")
            failed.append(config["model"])
            continue
        line = row(config, observed[config["model"]], device, args.smoke)
        append(results, line)
        print(line, end="")
    summary = degradation_line(observed, device)
    if summary and not args.smoke:
        # its own file: appended to the results table it would end the table, and the
        # rows of later runs would no longer be part of it
        summary_file = os.path.join(args.out, "degradation.md")
        append_text(summary_file, summary)
        print(summary + f"(also in {summary_file})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
