"""The experiments behind ``minires gradients``: each writes its figures and the numbers
behind them (JSON, and a text table) into an output folder, and returns the numbers.

* ``plain_vs_resnet``: plain-N and ResNet-N at initialisation, gradient norm at every
  block, for N = 20, 56, 110, with BatchNorm, without it, and with the last BatchNorm
  scale of each residual branch set to zero (``zero_init_residual``);
* ``deep_mlp``: a deep MLP with sigmoid or tanh (Xavier init), ReLU (He init) and ReLU
  with identity shortcuts, with and without BatchNorm: the classic vanishing gradient;
* ``degradation``: short training runs of plain-20/56 and ResNet-20/56 (Figure 6 of He
  et al., 2015): training and test error curves, and the gradient flow over training.

The summary number of a profile is its ``ratio()``: the activation-gradient norm at the
first block's output divided by that at the last block's. Above 1 the gradient grows
toward the input (explodes), below 1 it shrinks (vanishes).
"""

from __future__ import annotations

import json
import os
import time

import numpy

from .. import backend
from ..data import DataLoader, TensorDataset, get_dataset
from ..data import transforms as T
from ..models import cifar_resnet, get_model, mlp, plain_cifar
from ..optim import SGD
from ..tensors import Tensor, randn
from .flow import gradient_flow
from .monitor import GradientMonitor
from .plots import plot_depth_profiles, plot_error_curves, plot_heatmap
from .profile import format_table


def _say(log, message: str) -> None:
    if log is not None:
        log(message)


def _write(out, name: str, obj) -> str | None:
    if out is None:
        return None
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    with open(path, "w") as f:
        if isinstance(obj, str):
            f.write(obj.rstrip("\n") + "\n")
        else:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.write("\n")
    return path


def _report_ratios(profiles: dict, setting: dict, files: list, out, log) -> dict:
    """Print the first/last ratio of every profile and write the numbers next to the
    figures: ratios.txt (the table), ratios.json and profiles.json (every depth)."""
    ratios = {label: p.ratio() for label, p in profiles.items()}
    table = format_table(["model", "first/last ratio", "first", "last"],
                         [[label, ratios[label], p["act_grad_norm"][0], p["act_grad_norm"][-1]]
                          for label, p in profiles.items()])
    _say(log, table)
    files = files + [f for f in (
        _write(out, "ratios.txt", table),
        _write(out, "ratios.json", {"setting": setting, "ratios": ratios}),
        _write(out, "profiles.json", {"setting": setting, "profiles": {
            label: p.to_dict() for label, p in profiles.items()}})) if f]
    return {"profiles": profiles, "ratios": ratios, "files": files}


def _images(kind: str, n: int, shape: tuple, seed: int, device: str) -> Tensor:
    """A batch of inputs: standard normal noise ('random'), or the first ``n`` images of
    a shipped sample, normalised ('cifar10-sample' / 'mnist-sample')."""
    if kind == "random":
        backend.manual_seed(seed)
        return randn(n, *shape, device=device)
    images = get_dataset(kind, train=True).data[:n]
    if kind.startswith("mnist"):
        normalize = T.Normalize(T.MNIST_MEAN, T.MNIST_STD)
    else:
        images = downsample(images, shape[-1])
        normalize = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
    x = normalize(T.ToFloat()(images))
    return Tensor(x.reshape(n, *shape), device=device)


# --------------------------------------------------------------------- plain vs ResNet

# (label suffix, plain kwargs or None for no plain twin, resnet kwargs, description)
RESNET_VARIANTS = {
    "bn": ("", {"batch_norm": True}, {"batch_norm": True}, "with BatchNorm"),
    "no-bn": (" no BN", {"batch_norm": False}, {"batch_norm": False}, "without BatchNorm"),
    "zero-init": (" zero-init", None, {"batch_norm": True, "zero_init_residual": True},
                  "ResNets with BatchNorm and zero_init_residual"),
    "no-bn-zero-init": (" no BN zero-init", None,
                        {"batch_norm": False, "zero_init_residual": True},
                        "ResNets without BatchNorm, zero_init_residual"),
}


def plain_vs_resnet(depths=(20, 56, 110), variants=("bn", "no-bn"), batch_size: int = 128,
                    image_size: int = 32, data: str = "random", seed: int = 0,
                    device: str = "cpu", out=None, log=print) -> dict:
    """Gradient profiles at initialisation of plain-N and ResNet-N for each depth and
    variant. Returns {'profiles': {label: Profile}, 'ratios': {label: float}, 'files'}."""
    x = _images(data, batch_size, (3, image_size, image_size), seed, device)
    profiles, files = {}, []
    for variant in variants:
        suffix, plain_kwargs, resnet_kwargs, description = RESNET_VARIANTS[variant]
        group = {}
        for depth in depths:
            for family, kwargs in (("plain", plain_kwargs), ("ResNet", resnet_kwargs)):
                if kwargs is None:
                    continue
                label = f"{family}-{depth}{suffix}"
                backend.manual_seed(seed)  # the same weights for a model in every run
                model = (cifar_resnet(depth, **kwargs) if family == "ResNet"
                         else plain_cifar(depth, **kwargs)).to(device)
                start = time.perf_counter()
                group[label] = gradient_flow(model, x, seed=seed)
                _say(log, f"{label:>28}: first/last gradient-norm ratio "
                     f"{group[label].ratio():10.3g}  ({time.perf_counter() - start:.1f} s)")
        profiles.update(group)
        if out is not None:
            name = "resnet_" + variant.replace("-", "_")
            files += plot_depth_profiles(
                group, os.path.join(out, name), styles=_family_styles(group),
                title=f"Gradient norm at each block's output at initialisation, "
                f"{description} (dashed: plain, solid: ResNet; batch {batch_size} of {data} "
                f"{image_size}x{image_size} images)")
    setting = {"depths": list(depths), "variants": list(variants), "batch_size": batch_size,
               "image_size": image_size, "data": data, "seed": seed}
    return _report_ratios(profiles, setting, files, out, log)


def _family_styles(group: dict) -> dict:
    """Plain nets dashed, ResNets solid; one colour per depth."""
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    depths = sorted({label.split("-")[1].split()[0] for label in group}, key=int)
    styles = {}
    for label in group:
        depth = label.split("-")[1].split()[0]
        styles[label] = {"color": colors[depths.index(depth) % len(colors)],
                         "linestyle": "--" if label.startswith("plain") else "-"}
    return styles


# --------------------------------------------------------------------- deep MLP

# label -> (activation, init, residual)
MLP_VARIANTS = {
    "sigmoid (Xavier)": ("sigmoid", "xavier", False),
    "tanh (Xavier)": ("tanh", "xavier", False),
    "ReLU (He)": ("relu", "he", False),
    "ReLU + shortcuts (He)": ("relu", "he", True),
}


def deep_mlp(depth: int = 20, width: int = 256, batch_norm=(False, True),
             batch_size: int = 128, data: str = "random", seed: int = 0, device: str = "cpu",
             out=None, log=print) -> dict:
    """Gradient profiles at initialisation of ``depth``-hidden-layer MLPs of ``width``
    units with each activation, with and without BatchNorm."""
    x = _images(data, batch_size, (784,), seed, device)
    profiles, files = {}, []
    for bn in batch_norm:
        group = {}
        for name, (activation, init, residual) in MLP_VARIANTS.items():
            label = name + (" + BN" if bn else "")
            backend.manual_seed(seed)
            model = mlp(depth, width, activation, residual=residual, batch_norm=bn,
                        init=init).to(device)
            group[label] = gradient_flow(model, x, seed=seed)
            _say(log, f"{label:>32}: first/last gradient-norm ratio "
                 f"{group[label].ratio():10.3g}")
        profiles.update(group)
        if out is not None:
            files += plot_depth_profiles(
                group, os.path.join(out, "mlp_bn" if bn else "mlp"),
                title=f"MLP, {depth} hidden layers of {width}"
                f"{' with BatchNorm' if bn else ''}: gradient norm at each hidden layer's "
                f"output (batch {batch_size}, {data} inputs)")
    setting = {"depth": depth, "width": width, "batch_size": batch_size, "data": data,
               "seed": seed}
    return _report_ratios(profiles, setting, files, out, log)


# --------------------------------------------------------------------- degradation


def downsample(images: numpy.ndarray, size: int) -> numpy.ndarray:
    """(N, C, H, W) uint8 images averaged down to (N, C, size, size): cheaper runs."""
    n, c, h, w = images.shape
    if size == h:
        return images
    if h % size or w % size:
        raise ValueError(f"downsample: {h}x{w} images do not divide into {size}x{size}")
    fh, fw = h // size, w // size
    blocks = images.reshape(n, c, size, fh, size, fw).astype(numpy.float32)
    return numpy.round(blocks.mean(axis=(3, 5))).astype(numpy.uint8)


def cifar_loaders(dataset: str = "cifar10-sample", batch_size: int = 128,
                  limit_train: int | None = None, limit_test: int | None = None,
                  image_size: int = 32, augment: bool = False, seed: int = 0,
                  device: str = "cpu", data_root=None):
    """Training and test loaders for the degradation runs (normalised CIFAR images)."""
    sets = []
    for train, limit in ((True, limit_train), (False, limit_test)):
        data = get_dataset(dataset, train=train, root=data_root)
        n = limit or len(data)
        sets.append(TensorDataset(downsample(data.data[:n], image_size), data.targets[:n],
                                  classes=data.classes))
    normalize = T.Normalize(T.CIFAR10_MEAN, T.CIFAR10_STD)
    pad = max(1, image_size // 8)
    extra = [T.RandomCrop(image_size, padding=pad), T.RandomHorizontalFlip()] if augment else []
    train = DataLoader(sets[0], batch_size, shuffle=True, seed=seed,
                       transform=T.Compose([*extra, normalize]), device=device)
    test = DataLoader(sets[1], 500, transform=normalize, device=device)
    return train, test


def train_and_watch(name: str, train_loader, test_loader, epochs: int, lr: float = 0.1,
                    momentum: float = 0.9, weight_decay: float = 1e-4, seed: int = 0,
                    monitor_every: int | None = None, device: str = "cpu",
                    progress: bool = False, **model_kwargs) -> dict:
    """Train model ``name`` with SGD at a constant learning rate for ``epochs``, the
    gradient monitor recording every ``monitor_every``-th step; returns
    {'history': metric rows per epoch, 'flow': History, 'model'}."""
    from ..train import fit

    backend.manual_seed(seed)
    model = get_model(name, num_classes=len(train_loader.dataset.classes),
                      **model_kwargs).to(device)
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    train_loader.load_state_dict({"seed": seed, "epoch": 0, "batch": 0})  # same batches
    steps = range(0, epochs * len(train_loader), monitor_every) if monitor_every else ()
    monitor = GradientMonitor(model, optimizer, steps=steps)
    with monitor:
        history = fit(model, optimizer, train_loader, test_loader, epochs, progress=progress)
    return {"history": history, "flow": monitor.history, "model": model}


def degradation(models=("plain20", "plain56", "resnet20", "resnet56"), epochs: int = 24,
                dataset: str = "cifar10-sample", batch_size: int = 64, lr: float = 0.02,
                limit_train: int | None = 1000, limit_test: int | None = None,
                image_size: int = 16, augment: bool = False, monitor_every: int = 16,
                seed: int = 0, device: str = "cpu", data_root=None, out=None,
                progress: bool = False, log=print) -> dict:
    """Train each model the same way (same data order, SGD momentum 0.9, weight decay
    1e-4, constant ``lr``); plot training (dashed) and test (bold) error per epoch for
    plain and residual nets side by side, and each run's gradient flow over training.

    The defaults make a CPU run of minutes: 1000 of the shipped training images averaged
    down to 16x16, 24 epochs of batch 64. The learning rate is 0.02 rather than the
    paper's 0.1, at which plain-56 learns almost nothing and ResNet-56 is slow to start on
    this small problem (docs/gradient_flow.md has both runs).

    Returns {'runs': {name: {'history', 'flow'}}, 'summary': {name: final metrics},
    'files'}."""
    train_loader, test_loader = cifar_loaders(dataset, batch_size, limit_train, limit_test,
                                              image_size, augment, seed, device, data_root)
    runs, files = {}, []
    for name in models:
        start = time.perf_counter()
        run = train_and_watch(name, train_loader, test_loader, epochs, lr=lr, seed=seed,
                              monitor_every=monitor_every, device=device, progress=progress)
        runs[name] = {"history": run["history"], "flow": run["flow"]}
        last = run["history"][-1]
        _say(log, f"{name:>10}: train error {100 * (1 - last['train_acc']):5.1f}%, test error "
             f"{100 * (1 - last['test_acc']):5.1f}% after {epochs} epochs "
             f"({time.perf_counter() - start:.0f} s)")
        if out is not None and len(run["flow"]):
            files += plot_heatmap(run["flow"], os.path.join(out, f"heatmap_{name}"),
                                  title=f"{_pretty(name)}: gradient norm at each block's "
                                  "output during training")
    summary = {name: {k: run["history"][-1][k] for k in ("train_loss", "train_acc",
                                                          "test_loss", "test_acc")}
               for name, run in runs.items()}
    table = format_table(
        ["model", "train error %", "test error %", "train loss", "test loss"],
        [[_pretty(n), 100 * (1 - s["train_acc"]), 100 * (1 - s["test_acc"]), s["train_loss"],
          s["test_loss"]] for n, s in summary.items()])
    _say(log, table)
    if out is not None:
        panels = {}
        for name, run in runs.items():
            panel = "residual" if name.startswith("resnet") else "plain"
            panels.setdefault(panel, {})[_pretty(name)] = run["history"]
        files += plot_error_curves(
            panels, os.path.join(out, "error_curves"),
            title=f"{dataset}: {len(train_loader.dataset)} training images "
            f"({image_size}x{image_size}), batch {batch_size}, SGD lr {lr}")
    setting = {"models": list(models), "epochs": epochs, "dataset": dataset,
               "batch_size": batch_size, "lr": lr, "limit_train": limit_train,
               "limit_test": limit_test, "image_size": image_size, "augment": augment,
               "monitor_every": monitor_every, "seed": seed}
    files += [f for f in (
        _write(out, "summary.txt", table),
        _write(out, "runs.json", {"setting": setting, "runs": {
            name: {"history": run["history"], "flow": run["flow"].to_dict()}
            for name, run in runs.items()}})) if f]
    return {"runs": runs, "summary": summary, "files": files}


def _pretty(name: str) -> str:
    """'resnet56' -> 'ResNet-56', 'plain20' -> 'plain-20'."""
    for prefix, pretty in (("resnet", "ResNet-"), ("plain", "plain-")):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return pretty + name[len(prefix):]
    return name


# --------------------------------------------------------------------- one model


def profile_model(name: str = "resnet56", checkpoint=None, layers=None, batch_size: int = 128,
                  image_size: int = 32, data: str = "random", seed: int = 0,
                  device: str = "cpu", out=None, log=print) -> dict:
    """The gradient profile of one model, at initialisation or with the weights of a
    training ``checkpoint`` (whose model name then wins over ``name``)."""
    backend.manual_seed(seed)
    state = None
    if checkpoint is not None:
        from ..train import load_checkpoint

        saved = load_checkpoint(checkpoint)
        name, state = saved["config"].get("model", name), saved["model"]
    model = get_model(name)
    if state is not None:
        model.load_state_dict(state)
    model.to(device)
    shape = (784,) if name == "mlp" or name.endswith("mlp") else (3, image_size, image_size)
    x = _images(data, batch_size, shape, seed, device)
    profile = gradient_flow(model, x, layers=layers, seed=seed)
    label = _pretty(name) + (" (checkpoint)" if state is not None else " (initialisation)")
    _say(log, f"{label}: first/last gradient-norm ratio {profile.ratio():.3g}")
    _say(log, profile.table())
    files = []
    if out is not None:
        files += plot_depth_profiles({label: profile}, os.path.join(out, "gradient_norms"),
                                     title=f"{label}: gradient norm at each layer's output")
        files += [profile.save(os.path.join(out, "profile.json")),
                  _write(out, "profile.txt", profile.table() + "\n\n" +
                         profile.table(params=True))]
    return {"profile": profile, "files": files}
