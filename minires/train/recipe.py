"""From a plain configuration dict to a finished run: data, model, optimizer, schedule.

The defaults are He et al. (2015), section 4.2: SGD with momentum 0.9, weight decay
1e-4, learning rate 0.1 divided by 10 at 50% and 75% of training, batch 128, random
crops from 4-pixel-padded images and horizontal flips.

Rules of a run's folder (``out``):

* A fresh run refuses a folder that already holds a run (its ``checkpoint.mr`` or
  ``metrics.jsonl``) unless ``overwrite=True``, which deletes that run's files first.
* A resumed run writes to ``out`` when given, else next to the checkpoint it resumed
  from; never to a folder remembered in the checkpoint. Its ``metrics.jsonl`` is
  rewritten from the checkpoint's history, so the log and the checkpoint always agree.
* A resumed run keeps its recipe. Only where and how long it runs may change
  (``RESUMABLE``); another value of any other setting is an error.
* Another ``epochs`` on resume re-plans the learning-rate schedule: it is rebuilt for
  the new length and continues from where the run stands, so from there on the
  learning rate is the one a run planned with the new length from the start would have
  (``replan_schedule``; the log says so, with the old and new learning rate).

Fine-tuning (``init_from``, ``freeze``, ``freeze_bn``, ``backbone_lr_scale``) is in
``finetune.py``; what runs on the images (``image_size``, image folders) in
``preprocessing.py``.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy

from .. import backend
from ..autograd import no_grad
from ..data import DataLoader, TensorDataset, get_dataset
from ..models import get_model, list_models
from ..models.registry import takes
from ..optim import SGD, Adam, AdamW, lr_scheduler
from . import finetune, parallel
from .checkpoint import load_checkpoint, restore, run_state
from .errors import ConfigError
from .finetune import (  # noqa: F401  (fine-tuning's names, where they used to be)
    InitReport,
    classifier_name,
    freeze_backbone,
    init_from,
    load_backbone,
    read_weights,
)
from .loop import evaluate, fit, json_line
from .preprocessing import (  # noqa: F401  (normalisation: used to be here)
    STATISTICS,
    default_normalize,
    eval_batch_size,
    normalisation,
    preprocessing,
)
from .state import RunState

DEFAULTS = {
    "model": "resnet20", "dataset": "cifar10", "epochs": 160, "batch_size": 128,
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "schedule": "multistep", "warmup_epochs": 0, "augment": True, "seed": 0,
    "device": "cpu", "data_root": None, "download": False, "out": None,
    "init_from": None, "freeze": False, "progress": True, "limit_train": None,
    "matmul_precision": "highest",
    "freeze_bn": False, "backbone_lr_scale": 1.0, "image_size": None, "normalize": None,
}
# Data-parallel training (parallel.py): BatchNorm statistics over the global batch
DEFAULTS["sync_bn"] = False
OPTIMIZERS = ("sgd", "adam", "adamw")
NORMALIZATIONS = tuple(STATISTICS)
SCHEDULES = ("multistep", "cosine", "onecycle", "constant")
# What a resumed run may change: where and how long it runs, never what it computes.
RESUMABLE = ("epochs", "out", "device", "data_root", "download", "matmul_precision",
             "progress")


def flag(key: str) -> str:
    """A setting's name on the command line: 'limit_train' -> '--limit-train'."""
    return "--" + key.replace("_", "-")


# --------------------------------------------------------------------------- checks


def _integer(config: dict, key: str, low: int, optional: bool = False) -> None:
    value = config[key]
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{flag(key)} must be an integer >= {low}, got {value!r}")


def _number(config: dict, key: str, positive: bool) -> None:
    value = config[key]
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        kind = "a finite number > 0" if positive else "a finite number >= 0"
        raise ConfigError(f"{flag(key)} must be {kind}, got {value!r}")


def _choice(config: dict, key: str, choices) -> None:
    if config[key] not in choices:
        raise ConfigError(f"{flag(key)} {config[key]!r} is not one of: {', '.join(choices)}")


def check_device(device) -> str:
    """'cpu' or 'cuda', or a ``ConfigError`` that says why the device cannot be used."""
    try:
        device = backend.normalize_device(device)
    except ValueError as error:
        raise ConfigError(f"--device: {error}") from None
    if device == "cuda" and not backend.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU can be used here (CuPy is not "
                          "installed, or finds no GPU); `minires info` shows what is found")
    return device


def check_config(config: dict) -> None:
    """Refuse, with one line naming the setting, anything that cannot train."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; the settings are: "
                          f"{', '.join(DEFAULTS)}")
    if config["model"] not in list_models():
        raise ConfigError(f"--model {config['model']!r} is not one of: "
                          f"{', '.join(list_models())}")
    for key in ("epochs", "batch_size"):
        _integer(config, key, 1)
    _integer(config, "limit_train", 1, optional=True)
    _integer(config, "image_size", 1, optional=True)
    _integer(config, "seed", 0)
    _integer(config, "warmup_epochs", 0)
    _number(config, "lr", positive=True)
    _number(config, "backbone_lr_scale", positive=True)
    for key in ("momentum", "weight_decay"):
        _number(config, key, positive=False)
    _choice(config, "optimizer", OPTIMIZERS)
    _choice(config, "schedule", SCHEDULES)
    _choice(config, "matmul_precision", tuple(backend.MATMUL_PRECISIONS))
    if config["normalize"] is not None:
        _choice(config, "normalize", NORMALIZATIONS)
    if config["warmup_epochs"] and config["schedule"] == "onecycle":
        raise ConfigError("--warmup-epochs does not apply to --schedule onecycle, which "
                          "warms up by itself")
    if config["warmup_epochs"] >= config["epochs"]:
        raise ConfigError(f"--warmup-epochs {config['warmup_epochs']} leaves no epoch of "
                          f"the schedule in --epochs {config['epochs']}")
    if config["freeze"] and not config["init_from"]:
        raise ConfigError("--freeze needs --init-from: it trains only the classifier head "
                          "on top of the weights loaded from there")
    _check_fine_tuning(config)
    config["device"] = check_device(config["device"])


# --------------------------------------------------------------------------- parts


def _check_fine_tuning(config: dict) -> None:
    if config["freeze_bn"] and not config["init_from"]:
        raise ConfigError("--freeze-bn needs --init-from: it keeps the BatchNorm layers as "
                          "loaded from there")
    if config["backbone_lr_scale"] != 1:
        if not config["init_from"]:
            raise ConfigError("--backbone-lr-scale needs --init-from: it sets the learning "
                              "rate of the backbone loaded from there")
        if config["freeze"]:
            raise ConfigError("--backbone-lr-scale and --freeze exclude each other: a frozen "
                              "backbone does not train at any learning rate")
    if config["init_from"]:
        finetune.check_source(config["init_from"], config["model"])


def make_test_loader(config: dict, dataset: str | None = None, root=None, download=False):
    """The test split of ``dataset`` (default: the run's) with the run's preprocessing."""
    name = dataset or config["dataset"]
    prep = preprocessing(config, name)
    test_set = get_dataset(name, train=False, root=root, download=download,
                           size=prep.load_size)
    return DataLoader(test_set, eval_batch_size(config, name, test_set.data.shape[1:]),
                      shuffle=False, seed=0, transform=prep.test, device=config["device"])


def make_loaders(config: dict, world=None):
    """The train and test loaders; with several ranks (``world``) the train loader
    gives this rank its share of every global batch of ``batch_size``."""
    world = world if world is not None else parallel.World()
    name, root = config["dataset"], config["data_root"]
    prep = preprocessing(config)
    train_set = get_dataset(name, train=True, root=root, download=config["download"],
                            size=prep.load_size)
    if config["limit_train"]:  # a quick run on the first images only
        n = int(config["limit_train"])
        train_set = TensorDataset(train_set.data[:n], train_set.targets[:n],
                                  classes=train_set.classes)
    # A last batch of one image cannot be batch-normalised in training (no variance), so
    # it is dropped; the order is shuffled, so each epoch leaves out another image.
    drop_last = len(train_set) % config["batch_size"] == 1 < len(train_set)
    parallel.check_settings(config, len(train_set), world, drop_last)
    train = DataLoader(train_set, config["batch_size"], shuffle=True, drop_last=drop_last,
                       seed=config["seed"], transform=prep.train, device=config["device"],
                       num_replicas=world.size, rank=world.rank)
    return train, make_test_loader(config, root=root, download=config["download"])


def build_model(name: str, dataset):
    """``get_model(name)`` for ``dataset``: its number of classes, and for the models that
    take ``in_features`` (the MLPs) its number of input features (784 for MNIST, 3072
    for CIFAR-10)."""
    kwargs = {}
    if takes(name, "in_features"):
        kwargs["in_features"] = int(numpy.prod(dataset.data.shape[1:]))
    return get_model(name, num_classes=len(dataset.classes), **kwargs)


def check_model_takes(model, name: str, dataset_name: str, dataset, device: str,
                      transform=None) -> None:
    """One forward pass of two images (after ``transform``, the test preprocessing) in
    eval mode (no statistics change, no random draws): a model that cannot take the data
    set's images fails here, with one line, not deep inside the first training step."""
    loader = DataLoader(dataset, batch_size=2, seed=0, device=device, transform=transform)
    try:
        images, _ = next(iter(loader))
    except (ValueError, TypeError) as error:  # the preprocessing refuses these images
        raise ConfigError(f"--dataset {dataset_name}: its images (shape "
                          f"{tuple(dataset.data.shape[1:])}) cannot be preprocessed: "
                          f"{str(error).splitlines()[0]}") from None
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(images)
    except (ValueError, RuntimeError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"--model {name} does not take the images of --dataset "
                          f"{dataset_name} (shape {tuple(images.shape[1:])}): {reason}") from None
    finally:
        model.train(was_training)


def make_optimizer(config: dict, params):
    kind = config["optimizer"]
    if kind == "sgd":
        return SGD(params, lr=config["lr"], momentum=config["momentum"],
                   weight_decay=config["weight_decay"])
    if kind == "adam":
        return Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    if kind == "adamw":
        return AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    raise ConfigError(f"--optimizer {kind!r} is not one of: {', '.join(OPTIMIZERS)}")


def make_scheduler(config: dict, optimizer, steps_per_epoch: int):
    """-> (scheduler or None, steps per batch?).

    With ``warmup_epochs`` the learning rate ramps linearly from a tenth of ``lr`` over
    that many epochs; the schedule then covers the remaining epochs, its milestones
    (multistep) still at 50% and 75% of all the epochs.
    """
    kind, epochs, warmup = config["schedule"], config["epochs"], config["warmup_epochs"]
    if kind == "onecycle":
        # each parameter group to its own peak (the backbone's: --backbone-lr-scale times)
        return lr_scheduler.OneCycleLR(optimizer, max_lr=finetune.group_lrs(config, optimizer),
                                       epochs=epochs, steps_per_epoch=steps_per_epoch), True
    if kind == "multistep":  # the paper: /10 at 50% and 75% of training
        milestones = sorted({m for m in (epochs // 2, epochs * 3 // 4) if m > 0})
        # the schedule after a warm-up counts from its own start
        main = lr_scheduler.MultiStepLR(optimizer, [max(m - warmup, 0) for m in milestones],
                                        gamma=0.1)
    elif kind == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - warmup)
    elif kind == "constant":
        main = None
    else:
        raise ConfigError(f"--schedule {kind!r} is not one of: {', '.join(SCHEDULES)}")
    if not warmup:
        return main, False
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
    if main is None:  # the ramp holds the lr once it is done
        return ramp, False
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup]), False


def replan_schedule(config: dict, optimizer, steps_per_epoch: int, run) -> tuple:
    """The schedule rebuilt for ``config['epochs']`` and stepped to where ``run`` stands
    (once per finished epoch, or per finished batch for one-cycle), as if the run had
    been planned with that length from the start -> (scheduler, per_batch)."""
    scheduler, per_batch = make_scheduler(config, optimizer, steps_per_epoch)
    if scheduler is not None:
        for _ in range(run.scheduler_steps(steps_per_epoch, per_batch)):
            scheduler.step()
    return scheduler, per_batch


# --------------------------------------------------------------------------- the run


def _resumed_config(stored: dict, settings: dict, path) -> dict:
    """The checkpoint's recipe, with the settings that a resume may change."""
    config = {**DEFAULTS, **{k: v for k, v in stored.items() if k in DEFAULTS}}
    changed = [k for k, v in settings.items() if k not in RESUMABLE and v != config.get(k)]
    if changed:
        k = changed[0]
        raise ConfigError(f"{flag(k)} {settings[k]!r} differs from the run being resumed "
                          f"({path}: {config.get(k)!r}). A resumed run keeps its recipe; "
                          f"only {', '.join(map(flag, RESUMABLE[:-1]))} and --no-progress "
                          "may change. To train these weights differently, start a new "
                          "run with --init-from")
    config.update({k: v for k, v in settings.items() if k in RESUMABLE})
    config["out"] = settings.get("out")  # never the folder remembered in the checkpoint
    return config


def _run_files(out: str) -> dict:
    return {name: os.path.join(out, name)
            for name in ("checkpoint.mr", "metrics.jsonl", "curves.png")}


def check_out_dir(out: str, resume=None, overwrite: bool = False) -> list:
    """Refuse an ``out`` that holds another run (unless ``overwrite``); return the files
    of that run that ``prepare_out_dir`` will delete."""
    files = _run_files(out)
    checkpoint = files["checkpoint.mr"]
    continuing = resume is not None and os.path.exists(checkpoint) and \
        os.path.samefile(checkpoint, resume)
    held = [name for name in ("checkpoint.mr", "metrics.jsonl") if os.path.exists(files[name])]
    if not held or continuing:
        return []
    if not overwrite:
        how = f"continue it with --resume {checkpoint}, " if "checkpoint.mr" in held else ""
        raise ConfigError(f"{out} already holds another run ({' and '.join(held)}); "
                          f"{how}choose another --out, or pass --overwrite to delete that "
                          "run's files and start over")
    return [path for path in files.values() if os.path.exists(path)]


def prepare_out_dir(out: str, resume=None, overwrite: bool = False, history=()) -> None:
    """Claim ``out`` for this run (see the module's docstring)."""
    for path in check_out_dir(out, resume, overwrite):
        os.remove(path)
    files = _run_files(out)
    os.makedirs(out, exist_ok=True)
    if resume is not None:  # the log says exactly what the checkpoint holds
        temporary = files["metrics.jsonl"] + ".tmp"
        with open(temporary, "w") as f:
            f.writelines(json_line(row) for row in history)
        os.replace(temporary, files["metrics.jsonl"])


def run_training(**settings) -> dict:
    """Train as configured; return {'history', 'test_acc', 'model', 'checkpoint', 'log',
    'plot', 'init'}.

    ``settings`` are ``DEFAULTS``' keys, plus ``resume`` (a checkpoint to continue) and
    ``overwrite`` (replace the run already in ``out``). A setting left out, or None where
    the default is None, takes the default (on resume: the checkpoint's value).
    Everything is checked before anything is trained or written.

    Started by an MPI launcher (``mpiexec -n R``), every rank calls it alike and they
    train one run data-parallel: ``batch_size`` and ``lr`` are those of the global
    batch, rank 0 alone prints and writes, a mistake found on one rank ends every rank
    with its message (``parallel.py``).
    """
    world = parallel.World.join()  # one process without a launcher
    with parallel.rank0_output(world):
        try:
            return _run_training(world, **settings)
        except BaseException as error:
            world.agree(error)  # before training: every other rank raises it too
            raise


def _run_training(world, **settings) -> dict:
    settings = dict(settings)
    resume = settings.pop("resume", None)
    overwrite = bool(settings.pop("overwrite", False))
    settings = {k: v for k, v in settings.items()
                if not (v is None and DEFAULTS.get(k, 0) is None)}
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resume)
        config = _resumed_config(checkpoint["config"], settings, resume)
        config["out"] = config["out"] or os.path.dirname(str(resume)) or "."
    else:
        config = {**DEFAULTS, **settings}
        config["out"] = config["out"] or os.path.join("runs", str(config["model"]))
    if resume and "device" not in settings:
        try:
            check_device(config["device"])
        except ConfigError as error:
            raise ConfigError(f"{error}. {resume} was trained there; pass --device cpu "
                              "to continue it on the CPU") from None
    check_config(config)
    run = None
    if checkpoint is not None:
        run = run_state(checkpoint, config["device"])
        if config["epochs"] < run.epoch:
            done = run.completed_epochs
            raise ConfigError(f"{resume} has finished {done} epoch{'s' * (done != 1)}: "
                              f"--epochs {config['epochs']} leaves nothing to train. Pass "
                              "a larger --epochs to train on (the schedule is then "
                              "re-planned), or evaluate it with `minires eval`")
    if world.writes:  # refuse early, claim once all is checked
        check_out_dir(config["out"], resume, overwrite)
    weights = None
    if config["init_from"] and checkpoint is None:
        weights = read_weights(config["init_from"], config["model"], config["data_root"])
    if config["normalize"] is None:  # recorded, so that eval and a resume do the same
        config["normalize"] = (weights is not None and weights.normalize) or \
            default_normalize(config)
    previous_precision = backend.get_float32_matmul_precision()
    backend.set_float32_matmul_precision(config["matmul_precision"])
    try:
        return _train(config, checkpoint, run, resume, overwrite, weights, world)
    finally:  # the setting is global: leave it as the caller had it
        backend.set_float32_matmul_precision(previous_precision)


def _train(config: dict, checkpoint, run, resume, overwrite: bool, weights, world) -> dict:
    """``run_training`` once its settings are checked: build, restore, train."""
    out = config["out"]
    backend.manual_seed(config["seed"])
    train_loader, test_loader = make_loaders(config, world)
    classes = list(train_loader.dataset.classes)
    model = build_model(config["model"], train_loader.dataset).to(config["device"])
    check_model_takes(model, config["model"], config["dataset"], train_loader.dataset,
                      config["device"], transform=test_loader.transform)
    report = None
    if weights is not None:  # the head too when it was trained on these very classes
        report = load_backbone(model, weights.state, source=config["init_from"],
                               keep_head=weights.classes == classes)
        print(report, flush=True)
    # on resume too: the optimizer's groups hold the parameters that train
    if config["freeze"]:
        freeze_backbone(model)
    if config["freeze_bn"]:
        finetune.freeze_batch_norm(model)
    optimizer = make_optimizer(config, finetune.param_groups(model, config["lr"],
                                                             config["backbone_lr_scale"]))
    scheduler, per_batch = make_scheduler(config, optimizer, len(train_loader))
    if checkpoint is not None:
        planned = checkpoint["config"].get("epochs", config["epochs"])
        replan = planned != config["epochs"]
        restore(checkpoint, model=model, optimizer=optimizer,
                scheduler=None if replan else scheduler, loader=train_loader)
        where = (f"epoch {run.epoch}, step {run.step} of {len(train_loader)}"
                 if run.phase == "train" else f"epoch {run.epoch}, before its evaluation")
        print(f"resuming {resume} at {where}; writing to {out}", flush=True)
        if replan:
            old_lr = optimizer.param_groups[0]["lr"]
            scheduler, per_batch = replan_schedule(config, optimizer, len(train_loader), run)
            what = (f"the {config['schedule']} schedule is re-planned for "
                    f"{config['epochs']} epochs from here: lr "
                    f"{optimizer.param_groups[0]['lr']:.6g} (the old plan's: {old_lr:.6g})"
                    if scheduler is not None else "a constant learning rate: nothing to "
                    "re-plan")
            print(f"--epochs {config['epochs']} (the checkpoint planned {planned}): {what}",
                  flush=True)
    else:
        run = RunState(seed=config["seed"])
        print(f"training {config['model']} on {config['dataset']} for {config['epochs']} "
              f"epochs of {len(train_loader)} steps; writing to {out}", flush=True)
    print(preprocessing(config), flush=True)
    if config["init_from"]:
        print(finetune.describe_training(model, optimizer, config), flush=True)
    if world.writes:
        prepare_out_dir(out, resume, overwrite, run.history)
    model = parallel.distribute(model, config, world, train_loader, test_loader)
    # the classes: what `minires eval` checks, and what a later --init-from compares
    saved = {**{k: v for k, v in config.items() if k != "progress"}, "classes": classes}
    history = fit(model, optimizer, train_loader, test_loader, config["epochs"],
                  scheduler=scheduler, step_per_batch=per_batch, out_dir=out, config=saved,
                  progress=config["progress"], run=run)
    test_acc = history[-1]["test_acc"] if history else evaluate(model, test_loader)["acc"]
    files = _run_files(out)
    return {"history": history, "test_acc": test_acc, "model": parallel.unwrap(model),
            "checkpoint": files["checkpoint.mr"], "log": files["metrics.jsonl"],
            "plot": files["curves.png"], "init": report}
