"""The ``minires`` command: ``train``, ``eval``, ``info`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import sys


def _train_parser(commands) -> None:
    from .train.recipe import DEFAULTS as D

    p = commands.add_parser(
        "train", help="train a model (defaults: He et al. 2015's CIFAR-10 recipe)",
        description="Train a model. Defaults follow He et al. (2015), section 4.2: SGD, "
        "momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 50%% and 75%% of the "
        "epochs, batch 128, random crop and flip. Writes checkpoint.mr, metrics.jsonl and "
        "curves.png into --out.")
    p.add_argument("--model", default=D["model"], help="resnet20/32/44/56/110, plain20..."
                   "plain110, resnet18/34/50, residual_mlp (default: %(default)s)")
    p.add_argument("--dataset", default=D["dataset"], help="cifar10, cifar10-sample (ships "
                   "with minires: 2,000 train / 1,000 test images), mnist, mnist-sample "
                   "(default: %(default)s)")
    p.add_argument("--epochs", type=int, default=D["epochs"])
    p.add_argument("--batch-size", type=int, default=D["batch_size"])
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default=D["optimizer"])
    p.add_argument("--lr", type=float, default=D["lr"])
    p.add_argument("--momentum", type=float, default=D["momentum"])
    p.add_argument("--weight-decay", type=float, default=D["weight_decay"])
    p.add_argument("--schedule", choices=["multistep", "cosine", "onecycle", "constant"],
                   default=D["schedule"])
    p.add_argument("--warmup-epochs", type=int, default=D["warmup_epochs"],
                   help="linear learning-rate warm-up before the schedule")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop and flip")
    p.add_argument("--seed", type=int, default=D["seed"])
    p.add_argument("--device", default=D["device"], help="cpu or cuda")
    p.add_argument("--data-root", default=None, help="folder with the data set files "
                   "(default: $MINIRES_DATA or ~/.cache/minires)")
    p.add_argument("--download", action="store_true", help="download the data set if absent")
    p.add_argument("--limit-train", type=int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--out", default=None, help="output folder (default: runs/MODEL)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue a run from its checkpoint.mr")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="fine-tune: start from these weights (a head of another size is "
                   "replaced)")
    p.add_argument("--freeze", action="store_true",
                   help="with --init-from: train only the classifier head")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _train(args) -> None:
    from .train import run_training

    config = vars(args).copy()
    config.pop("command")
    config["out"] = config["out"] or os.path.join("runs", args.model)
    result = run_training(**config)
    print(f"test accuracy: {100 * result['test_acc']:.2f}%")
    print(f"checkpoint: {result['checkpoint']}\nlog:        {result['log']}\n"
          f"plot:       {result['plot']}")


def _eval(args) -> None:
    from .data import DataLoader, get_dataset
    from .models import get_model
    from .train import evaluate, load_checkpoint
    from .train.recipe import normalisation

    checkpoint = load_checkpoint(args.checkpoint)
    config = checkpoint["config"]
    dataset = args.dataset or config.get("dataset", "cifar10")
    test_set = get_dataset(dataset, train=False, root=args.data_root or config.get("data_root"))
    model = get_model(config["model"], num_classes=len(test_set.classes))
    model.load_state_dict(checkpoint["model"])
    model.to(args.device)
    loader = DataLoader(test_set, 500, transform=normalisation(dataset), device=args.device)
    result = evaluate(model, loader)
    print(f"{config['model']} on {dataset} test ({len(test_set)} images): "
          f"loss {result['loss']:.4f}, accuracy {100 * result['acc']:.2f}%")


def _info(args) -> None:
    import platform

    import numpy

    from . import __version__, backend
    from .data import default_root

    print(f"minires {__version__}, Python {platform.python_version()}, NumPy "
          f"{numpy.__version__}")
    if backend.cupy is None:
        print("CuPy: not installed (pip install 'minires[cuda12]' or 'minires[cuda13]')")
    else:
        print(f"CuPy {backend.cupy.__version__}: {backend.cuda.device_count()} CUDA device(s)")
    print(f"devices: cpu{', cuda' if backend.cuda.is_available() else ''}")
    print(f"CUDA kernels: {'on' if backend.kernels_enabled() else 'off'} (MINIRES_KERNELS)")
    print(f"data root: {default_root()} (set $MINIRES_DATA or --data-root to change); "
          "cifar10-sample and mnist-sample ship with minires")


def _course_parsers(commands) -> None:
    from .course.cli import add_parsers

    add_parsers(commands)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="minires", description="minires: learn deep "
                                     "learning by building it.")
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands)
    ev = commands.add_parser("eval", help="evaluate a checkpoint on a test set")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--dataset", default=None, help="default: the one it was trained on")
    ev.add_argument("--data-root", default=None)
    ev.add_argument("--device", default="cpu")
    commands.add_parser("info", help="versions, devices and where data is looked for")
    demo = commands.add_parser("demo", help="train a tiny CNN made of minires ops and watch "
                               "its loss fall")
    demo.add_argument("--steps", type=int, default=150)
    _course_parsers(commands)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "info":
            _info(args)
        elif args.command in ("grade", "make-student-copy"):
            from .course.cli import run

            sys.exit(run(args))
        else:
            from .demo import run_demo

            losses = run_demo(steps=args.steps)
            print(f"loss fell from {losses[0]:.3f} to {sum(losses[-10:]) / 10:.3f} "
                  "(mean of the last 10 steps)")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
