"""From a plain configuration dict to a finished run: data, model, optimizer, schedule.

The defaults are He et al. (2015), section 4.2: SGD with momentum 0.9, weight decay
1e-4, learning rate 0.1 divided by 10 at 50% and 75% of training, batch 128, random
crops from 4-pixel-padded images and horizontal flips.
"""

from __future__ import annotations

import os

from .. import backend
from ..data import DataLoader, TensorDataset, get_dataset
from ..data import transforms as T
from ..models import get_model
from ..optim import SGD, Adam, AdamW, lr_scheduler
from .checkpoint import load_checkpoint, restore
from .loop import evaluate, fit

DEFAULTS = {
    "model": "resnet20", "dataset": "cifar10", "epochs": 160, "batch_size": 128,
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "schedule": "multistep", "warmup_epochs": 0, "augment": True, "seed": 0,
    "device": "cpu", "data_root": None, "download": False, "out": "runs/resnet20",
    "init_from": None, "freeze": False, "progress": True, "limit_train": None,
    "matmul_precision": "highest",
}


def normalisation(dataset: str):
    if dataset.startswith("mnist"):
        return T.Normalize(T.MNIST_MEAN, T.MNIST_STD)
    return T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)


def make_loaders(config: dict):
    name, root = config["dataset"], config["data_root"]
    train_set = get_dataset(name, train=True, root=root, download=config["download"])
    test_set = get_dataset(name, train=False, root=root, download=config["download"])
    if config["limit_train"]:  # a quick run on the first images only
        n = int(config["limit_train"])
        train_set = TensorDataset(train_set.data[:n], train_set.targets[:n],
                                  classes=train_set.classes)
    normalize = normalisation(name)
    augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] \
        if config["augment"] and name.startswith("cifar") else []
    train = DataLoader(train_set, config["batch_size"], shuffle=True, drop_last=False,
                       seed=config["seed"], transform=T.Compose([*augment, normalize]),
                       device=config["device"])
    test = DataLoader(test_set, 500, shuffle=False, transform=normalize,
                      device=config["device"])
    return train, test


def make_optimizer(config: dict, params):
    kind = config["optimizer"]
    if kind == "sgd":
        return SGD(params, lr=config["lr"], momentum=config["momentum"],
                   weight_decay=config["weight_decay"])
    if kind == "adam":
        return Adam(params, lr=config["lr"], weight_decay=config["weight_decay"])
    if kind == "adamw":
        return AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    raise ValueError(f"unknown optimizer {kind!r}: choose sgd, adam or adamw")


def make_scheduler(config: dict, optimizer, steps_per_epoch: int):
    """-> (scheduler or None, steps per batch?)."""
    kind, epochs = config["schedule"], config["epochs"]
    if kind == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=config["lr"], epochs=epochs,
                                       steps_per_epoch=steps_per_epoch), True
    if kind == "multistep":  # the paper: /10 at 50% and 75% of training
        milestones = sorted({m for m in (epochs // 2, epochs * 3 // 4) if m > 0})
        main = lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    elif kind == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    elif kind == "constant":
        main = None
    else:
        raise ValueError(f"unknown schedule {kind!r}: choose multistep, cosine, onecycle "
                         "or constant")
    warmup = config["warmup_epochs"]
    if warmup and main is not None:
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup)
        return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup]), False
    return main, False


def classifier_name(model) -> str:
    """The name of the model's last Linear layer: the head that fine-tuning replaces."""
    from ..nn import Linear

    names = [name for name, m in model.named_modules() if isinstance(m, Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as a head")
    return names[-1]


def init_from(model, path: str, freeze: bool) -> None:
    """Fine-tuning: copy every weight of a checkpoint except its classifier head.

    The head stays as the model initialised it: it belongs to the old task, even when
    the new task happens to have as many classes. With ``freeze`` only the head trains
    (and ``fit`` keeps the frozen BatchNorm layers' running statistics fixed too).
    """
    state = load_checkpoint(path)["model"]
    head = classifier_name(model)
    kept = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    model.load_state_dict(kept, strict=False)
    if freeze:
        model.requires_grad_(False)
        for p in dict(model.named_modules())[head].parameters():
            p.requires_grad_(True)


def run_training(**overrides) -> dict:
    """Train as configured; return {'history', 'test_acc', 'checkpoint', 'log', 'plot'}."""
    config = {**DEFAULTS, **overrides}
    resume = config.pop("resume", None)
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resume)
        # a resumed run keeps its recipe; only the length and where it runs may change
        config = {**config, **checkpoint["config"], "epochs": config["epochs"],
                  "device": config["device"], "progress": config["progress"]}
    backend.manual_seed(config["seed"])
    train_loader, test_loader = make_loaders(config)
    num_classes = len(train_loader.dataset.classes)
    model = get_model(config["model"], num_classes=num_classes).to(config["device"])
    if config["init_from"] and checkpoint is None:
        init_from(model, config["init_from"], config["freeze"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params)
    scheduler, per_batch = make_scheduler(config, optimizer, len(train_loader))
    start, history = 0, []
    if checkpoint is not None:
        restore(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler,
                loader=train_loader)
        start, history = checkpoint["epoch"], checkpoint["history"]
    out = config["out"]
    saved = {k: v for k, v in config.items() if k != "progress"}
    previous_precision = backend.get_float32_matmul_precision()
    backend.set_float32_matmul_precision(config["matmul_precision"])
    try:
        history = fit(model, optimizer, train_loader, test_loader, config["epochs"],
                      scheduler=scheduler, step_per_batch=per_batch, out_dir=out,
                      start_epoch=start, history=history, config=saved,
                      progress=config["progress"])
    finally:  # the setting is global: leave it as the caller had it
        backend.set_float32_matmul_precision(previous_precision)
    test_acc = history[-1]["test_acc"] if history else evaluate(model, test_loader)["acc"]
    return {"history": history, "test_acc": test_acc, "model": model,
            "checkpoint": os.path.join(out, "checkpoint.mr"),
            "log": os.path.join(out, "metrics.jsonl"), "plot": os.path.join(out, "curves.png")}
