"""The ``minires`` command: ``train``, ``eval``, ``info``, ``demo``, ``gradients``,
``selftest``, ``grade`` and ``make-student-copy``."""

from __future__ import annotations

import argparse
import os
import sys

import numpy

from ..serialization import CheckpointError


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error as one line ``minires: error: ...`` (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"minires: error: {message} (see: {self.prog} --help)\n")


def _train_parser(commands) -> None:
    from ..backend import MATMUL_PRECISIONS
    from ..models import list_models
    from ..train.recipe import DEFAULTS as D
    from ..train.recipe import OPTIMIZERS, SCHEDULES

    # Every default is None here and comes from DEFAULTS in run_training, so a resumed
    # run can tell a setting given on the command line from one left out.
    p = commands.add_parser(
        "train", help="train a model (defaults: He et al. 2015's CIFAR-10 recipe)",
        description="Train a model. Defaults follow He et al. (2015), section 4.2: SGD, "
        "momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 50% and 75% of the "
        "epochs, batch 128, random crop and flip. Writes checkpoint.mr, metrics.jsonl and "
        "curves.png into --out. Ctrl-C (or SIGTERM) finishes the current step, saves a "
        "checkpoint there and stops; --resume continues exactly.")
    p.add_argument("--model", help=f"{', '.join(list_models())} (default: {D['model']})")
    p.add_argument("--dataset", help="cifar10, cifar10-sample (ships with minires: 2,000 "
                   "train / 1,000 test images), mnist, mnist-sample, or imagefolder:PATH "
                   "(your images: PATH/train/<class>/*.png and PATH/val/<class>/*.png) "
                   f"(default: {D['dataset']})")
    p.add_argument("--epochs", type=int, help=f"epochs in all (default: {D['epochs']}); "
                   "with --resume, another number re-plans the schedule from where the run "
                   "stands")
    p.add_argument("--batch-size", type=int, help=f"(default: {D['batch_size']})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default: {D['optimizer']})")
    p.add_argument("--lr", type=float, help=f"learning rate (default: {D['lr']})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default: {D['momentum']})")
    p.add_argument("--weight-decay", type=float, help=f"(default: {D['weight_decay']})")
    p.add_argument("--schedule", choices=SCHEDULES, help=f"(default: {D['schedule']})")
    p.add_argument("--warmup-epochs", type=int, help="linear learning-rate warm-up from "
                   "lr/10 before the multistep, cosine or constant schedule (default: 0)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no random crop and flip")
    p.add_argument("--seed", type=int, help=f"(default: {D['seed']})")
    p.add_argument("--device", help="cpu or cuda (default: cpu)")
    p.add_argument("--matmul-precision", choices=list(MATMUL_PRECISIONS),
                   help="float32 matrix multiplies: highest (float32), high (TF32: tensor "
                   "cores on GPUs of compute capability 8.0+), medium (bfloat16 inputs); see "
                   f"mr.set_float32_matmul_precision (default: {D['matmul_precision']})")
    p.add_argument("--data-root", help="folder with the data set files "
                   "(default: $MINIRES_DATA or ~/.cache/minires)")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the data set if absent")
    p.add_argument("--limit-train", type=int, metavar="N",
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--out", help="output folder (default: runs/MODEL; with --resume: the "
                   "checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="start over in an --out that already holds a run, deleting its "
                   "checkpoint.mr, metrics.jsonl and curves.png")
    p.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue a run from its checkpoint.mr (its recipe is kept)")
    _fine_tuning_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    _parallel_options(p)


def _parallel_options(p) -> None:
    """Data-parallel training (minires/train/parallel.py, docs/distributed.md)."""
    q = p.add_argument_group(
        "data-parallel", "Run under `mpiexec -n N minires train ...` (or with --nproc N) "
        "to train on N processes: --batch-size and --lr are those of the global batch, "
        "which each step splits among the processes; rank 0 alone prints and writes.")
    q.add_argument("--nproc", type=int, metavar="N", help="start N processes on this "
                   "machine with mpiexec (each with its share of the cores)")
    q.add_argument("--sync-bn", action="store_true", default=None, help="BatchNorm with "
                   "the statistics of the global batch (SyncBatchNorm): the run then equals "
                   "one process with the whole batch, up to rounding")


def _fine_tuning_options(p) -> None:
    from ..train.recipe import NORMALIZATIONS

    g = p.add_argument_group("fine-tuning and image preprocessing (docs/training.md)")
    g.add_argument("--init-from", metavar="WEIGHTS",
                   help="fine-tune: start from these weights, with a new classifier head: a "
                   "file (a minires checkpoint or state dict, safetensors, or a PyTorch "
                   ".pth), or torchvision:NAME, a torchvision release for --model (e.g. "
                   "torchvision:IMAGENET1K_V1 or torchvision:resnet18.DEFAULT), read from "
                   "<data root>/weights/ and downloaded there once. The head is loaded too "
                   "when the weights are a minires run trained on the same classes")
    g.add_argument("--freeze", action="store_true", default=None,
                   help="with --init-from: train only the classifier head (the backbone's "
                   "BatchNorm statistics stay as loaded)")
    g.add_argument("--backbone-lr-scale", type=float, metavar="S",
                   help="with --init-from: two parameter groups, the head at --lr and the "
                   "backbone at S times --lr; every schedule scales both (default: 1, one "
                   "group)")
    g.add_argument("--freeze-bn", action="store_true", default=None,
                   help="with --init-from: freeze every BatchNorm layer (weight, bias and "
                   "running statistics)")
    g.add_argument("--image-size", type=int, metavar="S",
                   help="the size the model sees: for imagefolder data sets the crop "
                   "(default 224; images are decoded at S*256/224), for others a resize of "
                   "every batch (default: none)")
    g.add_argument("--normalize", choices=NORMALIZATIONS,
                   help="whose mean/std normalise the images (default: imagenet for image "
                   "folders and torchvision weights, that of the --init-from run, else the "
                   "data set's own)")


def _train(args, argv: list) -> None:
    from ..distributed import launcher_world_size
    from ..train import launch, parallel, run_training

    config = {k: v for k, v in vars(args).items() if v is not None and k != "command"}
    nproc = config.pop("nproc", None)
    if nproc is not None:
        launch.check_nproc(nproc, launcher_world_size())
        if nproc > 1 and launcher_world_size() is None:
            launch.relaunch(nproc, argv)  # does not return
    world = parallel.World.join()  # under mpiexec: this process is one of its ranks
    # A diverging run ends in one line naming where (NonFiniteError), not in a stream
    # of NumPy's overflow warnings first.
    with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = run_training(**config)
    if world.writes:
        print(f"test accuracy: {100 * result['test_acc']:.2f}%")
        print(f"checkpoint: {result['checkpoint']}\nlog:        {result['log']}\n"
              f"plot:       {result['plot']}")


def _eval(args) -> None:
    from ..train import evaluate, load_checkpoint
    from ..train.recipe import (
        DEFAULTS,
        build_model,
        check_device,
        check_model_takes,
        make_test_loader,
    )

    device = check_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint)
    config = {**DEFAULTS, **checkpoint["config"], "device": device}
    dataset = args.dataset or config.get("dataset", "cifar10")
    # the run's own preprocessing (image size, normalisation) on the test images
    loader = make_test_loader(config, dataset, root=args.data_root or config.get("data_root"))
    test_set = loader.dataset
    trained_on = config.get("classes")
    if trained_on is not None and list(trained_on) != list(test_set.classes):
        raise CheckpointError(f"{args.checkpoint} was trained on the classes {trained_on}, "
                              f"but --dataset {dataset} has {list(test_set.classes)}")
    model = build_model(config["model"], test_set)
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"{args.checkpoint}: its weights do not fit a "
                              f"{config['model']} for {dataset} ({len(test_set.classes)} "
                              f"classes): {str(error).splitlines()[-1].strip()}") from None
    model.to(device)
    check_model_takes(model, config["model"], dataset, test_set, device, loader.transform)
    result = evaluate(model, loader)
    print(f"{config['model']} on {dataset} test ({len(test_set)} images): "
          f"loss {result['loss']:.4f}, accuracy {100 * result['acc']:.2f}%")


def _info(args) -> None:
    import platform

    import numpy

    from .. import __version__, backend
    from ..data import default_root

    print(f"minires {__version__}, Python {platform.python_version()}, NumPy "
          f"{numpy.__version__}")
    if backend.cupy is None:
        print("CuPy: not installed (pip install 'minires[cuda12]' or 'minires[cuda13]')")
    else:
        print(f"CuPy {backend.cupy.__version__}: {backend.cuda.device_count()} CUDA device(s)")
    print(f"devices: cpu{', cuda' if backend.cuda.is_available() else ''}")
    # the kernels run only on GPU arrays: without CuPy or a GPU the switch changes nothing
    if backend.cupy is None:
        kernels = "off (no CuPy)"
    elif not backend.cuda.is_available():
        kernels = "off (no CUDA GPU)"
    else:
        kernels = f"{'on' if backend.kernels_enabled() else 'off'} (MINIRES_KERNELS)"
    print(f"CUDA kernels: {kernels}")
    print(f"data root: {default_root()} (set $MINIRES_DATA or --data-root to change); "
          "cifar10-sample and mnist-sample ship with minires")


def _gradients_parser(commands) -> None:
    p = commands.add_parser(
        "gradients", help="gradient-flow experiments: plain vs ResNet, deep MLPs, degradation",
        description="See how gradients flow through deep networks. Each experiment writes "
        "its figures (PNG and SVG) and the numbers behind them (JSON, text) into --out.")
    experiments = p.add_subparsers(dest="experiment", required=True)

    def common(q, out: str, batch_size: int) -> None:
        q.add_argument("--batch-size", type=int, default=batch_size)
        q.add_argument("--device", default="cpu", help="cpu or cuda")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--out", default=out, help="output folder (default: %(default)s)")

    r = experiments.add_parser(
        "resnet", help="plain-N vs ResNet-N at initialisation: gradient norm per block",
        description="One forward and backward pass at initialisation (Kaiming init, "
        "BatchNorm in training mode, random labels) of plain-N and ResNet-N; the gradient "
        "norm at every block's output and the first/last ratio.")
    r.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110])
    r.add_argument("--variants", nargs="+", default=["bn", "no-bn", "zero-init"],
                   choices=["bn", "no-bn", "zero-init", "no-bn-zero-init"],
                   help="with BatchNorm, without, and ResNets with zero_init_residual "
                   "(default: %(default)s)")
    r.add_argument("--image-size", type=int, default=32)
    r.add_argument("--data", default="random", choices=["random", "cifar10-sample"],
                   help="standard normal noise images, or real sample images")
    common(r, os.path.join("runs", "gradients", "resnet"), 128)

    m = experiments.add_parser(
        "mlp", help="deep MLP: sigmoid / tanh / ReLU / ReLU + shortcuts, with and without BN",
        description="The classic vanishing gradient: one forward and backward pass at "
        "initialisation of deep MLPs with each activation, with and without BatchNorm.")
    m.add_argument("--depth", type=int, default=20, help="hidden layers")
    m.add_argument("--width", type=int, default=256)
    m.add_argument("--data", default="random", choices=["random", "mnist-sample"])
    common(m, os.path.join("runs", "gradients", "mlp"), 128)

    d = experiments.add_parser(
        "degradation", help="train plain-20/56 and ResNet-20/56 the same way: error curves",
        description="The degradation problem (He et al. 2015, Figure 6): the same short "
        "training run for each model; training (dashed) and test (bold) error per epoch, "
        "and a depth-by-step heat map of each run's gradient norms. The defaults run on "
        "a CPU in minutes; on the full data with a GPU: --dataset cifar10 --limit-train 0 "
        "--image-size 32 --batch-size 128 --augment --device cuda.")
    d.add_argument("--models", nargs="+", default=["plain20", "plain56", "resnet20",
                                                   "resnet56"])
    d.add_argument("--dataset", default="cifar10-sample",
                   help="cifar10-sample (ships with minires) or cifar10 (default: %(default)s)")
    d.add_argument("--data-root", default=None)
    d.add_argument("--epochs", type=int, default=24)
    d.add_argument("--lr", type=float, default=0.02, help="constant learning rate "
                   "(default: %(default)s; at the paper's 0.1 plain-56 learns almost nothing here)")
    d.add_argument("--limit-train", type=int, default=1000,
                   help="train on the first N images (default: %(default)s; 0: all)")
    d.add_argument("--limit-test", type=int, default=None)
    d.add_argument("--image-size", type=int, default=16, help="average the 32x32 images "
                   "down to this size (default: %(default)s, 4x cheaper than 32)")
    d.add_argument("--augment", action="store_true", help="random crop and flip")
    d.add_argument("--monitor-every", type=int, default=16,
                   help="record the gradient flow every N steps (default: %(default)s)")
    d.add_argument("--progress", action="store_true")
    common(d, os.path.join("runs", "gradients", "degradation"), 64)

    o = experiments.add_parser(
        "model", help="the gradient profile of one model, at init or from a checkpoint")
    o.add_argument("--model", default="resnet56", help="a model name (default: %(default)s; "
                   "with --checkpoint, the checkpoint's model)")
    o.add_argument("--checkpoint", default=None, help="a checkpoint.mr of minires train")
    o.add_argument("--layers", default=None, help="'blocks' or 'weights' (default: blocks "
                   "if the model has any)")
    o.add_argument("--image-size", type=int, default=32)
    o.add_argument("--data", default="random", choices=["random", "cifar10-sample"])
    common(o, os.path.join("runs", "gradients", "model"), 128)


def _gradients(args) -> None:
    from ..inspect import experiments as E

    if args.experiment == "resnet":
        result = E.plain_vs_resnet(args.depths, args.variants, args.batch_size,
                                   args.image_size, args.data, args.seed, args.device,
                                   args.out)
    elif args.experiment == "mlp":
        result = E.deep_mlp(args.depth, args.width, (False, True), args.batch_size,
                            args.data, args.seed, args.device, args.out)
    elif args.experiment == "degradation":
        result = E.degradation(args.models, args.epochs, args.dataset, args.batch_size,
                               args.lr, args.limit_train, args.limit_test, args.image_size,
                               args.augment, args.monitor_every, args.seed, args.device,
                               args.data_root, args.out, args.progress)
    else:
        result = E.profile_model(args.model, args.checkpoint, args.layers, args.batch_size,
                                 args.image_size, args.data, args.seed, args.device, args.out)
    print("wrote " + ", ".join(result["files"]))


def _course_parsers(commands) -> None:
    from .course.cli import add_parsers

    add_parsers(commands)


def _one_line(error: BaseException) -> str:
    """An error as one line: files by name, the first line of longer messages."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    text = str(error).strip() or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines())


def main(argv=None) -> None:
    """The ``minires`` command. A user error (a bad option, a missing or damaged file, a
    setting that cannot work) prints one line ``minires: error: ...`` and exits with
    status 2; a run stopped by a non-finite loss exits with 1, one stopped by Ctrl-C
    with 130 and by SIGTERM with 143, after saving its checkpoint. Set MINIRES_DEBUG=1
    for the full traceback instead."""
    from ..data import DatasetError
    from ..train import ConfigError, NonFiniteError, TrainingInterrupted

    parser = _Parser(prog="minires", description="minires: learn deep learning by "
                     "building it.")
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
    _gradients_parser(commands)
    from . import selftest

    check = commands.add_parser(
        "selftest", help="check this installation on a device (gradient checks, kernels, "
        "NumPy vs CuPy, a few training steps)", description=selftest.__doc__.splitlines()[0])
    selftest.add_arguments(check)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    user_errors = (ConfigError, CheckpointError, DatasetError, OSError, ValueError)
    try:
        if args.command == "train":
            _train(args, argv)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "info":
            _info(args)
        elif args.command == "gradients":
            _gradients(args)
        elif args.command == "selftest":
            sys.exit(selftest.run(args))
        elif args.command in ("grade", "make-student-copy"):
            from .course.cli import run

            sys.exit(run(args))
        else:
            if args.steps < 1:
                raise ConfigError(f"--steps must be an integer >= 1, got {args.steps}")
            from .demo import run_demo

            losses = run_demo(steps=args.steps)
            print(f"loss fell from {losses[0]:.3f} to {sum(losses[-10:]) / 10:.3f} "
                  "(mean of the last 10 steps)")
    except TrainingInterrupted as stop:
        _report(f"minires: {stop}", stop, 143 if stop.signal == "SIGTERM" else 130)
    except KeyboardInterrupt as stop:  # a second signal: stopped at once, nothing saved
        _report(None, stop, 130)
    except NonFiniteError as error:
        if os.environ.get("MINIRES_DEBUG"):
            raise
        _report(f"minires: error: {_one_line(error)}", error, 1)
    except user_errors as error:
        if os.environ.get("MINIRES_DEBUG"):
            raise
        _report(f"minires: error: {_one_line(error)}", error, 2)


def _report(message: str | None, error: BaseException, status: int):
    """Print ``message`` (if any) and exit with ``status``. With several ranks
    (mpiexec): an error that every rank raised alike is printed by rank 0; one of this
    rank alone ends every rank (MPI_Abort), since the others would wait for it forever."""
    from .. import distributed as dist

    several = dist.is_initialized() and dist.get_world_size() > 1
    if several:
        from ..distributed import faults
        from ..train.parallel import on_every_rank

        rank, size = dist.get_rank(), dist.get_world_size()
        if not on_every_rank(error):
            faults.abort(message or "minires: stopped at once, without saving", rank, size,
                         status)
        if rank != 0:
            message = None
    if message:
        print(message, file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
