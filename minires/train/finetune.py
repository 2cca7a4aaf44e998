"""Fine-tuning: start a run from weights trained elsewhere, with a head for the new task.

``--init-from`` takes

* a file in any format ``mr.load`` reads (recognised by its content): a minires training
  checkpoint (its model's weights), a state dict saved with ``mr.save``, a safetensors
  file, or a PyTorch ``.pth``/``.pt`` (needs torch). Wrapped state dicts
  (``{'state_dict': ...}``, ``module.`` prefixes) are unwrapped as by
  ``models.load_weights``;
* ``torchvision:NAME``, a torchvision release of ImageNet weights for ``--model``
  (``torchvision:IMAGENET1K_V1``, ``torchvision:DEFAULT``), or ``torchvision:ARCH.NAME``
  naming the architecture too (``torchvision:resnet18.IMAGENET1K_V1``; torchvision's
  ``ResNet18_Weights.IMAGENET1K_V1`` works as well). It is read from ``weights/`` under
  the data root, downloaded there once (hash checked) when absent.

Every tensor but the classifier head's (the model's last ``Linear``) must match by name
and shape. The head starts fresh, unless the weights come from a minires run that was
trained on the same classes (its checkpoint records them): then it is loaded too, which
is what the second stage of a two-stage fine-tuning needs.

What trains: ``--freeze`` trains the head alone; ``--freeze-bn`` freezes every BatchNorm
layer (weight, bias and running statistics, as torchvision's ``FrozenBatchNorm2d``);
``--backbone-lr-scale S`` gives the optimizer two parameter groups, the head at ``--lr``
and the rest at ``S * --lr``, which every schedule scales alike. ``fit`` keeps a
BatchNorm layer whose weights are frozen in eval mode, so its running statistics stay
as loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy

from ..models.pretrained import (
    WEIGHTS,
    PretrainedWeights,
    pretrained_weights,
    state_dict_from,
    weights_file,
)
from ..serialization import CheckpointError, load
from .checkpoint import FORMAT
from .errors import ConfigError

RELEASE_PREFIX = "torchvision:"


def is_release(source) -> bool:
    """Whether ``--init-from`` names a published release rather than a file."""
    return isinstance(source, str) and source.lower().startswith(RELEASE_PREFIX)


def release_for(source: str, model: str) -> PretrainedWeights:
    """The torchvision release ``torchvision:[ARCH.]NAME`` names, for ``--model model``."""
    rest = source.split(":", 1)[1]
    arch = model
    if "." in rest:
        arch, rest = rest.split(".", 1)
        arch = arch.lower().removesuffix("_weights")
    known = ", ".join(WEIGHTS)
    if arch not in WEIGHTS:
        raise ConfigError(f"--init-from {source}: torchvision releases are known for {known}; "
                          f"not for {arch!r}")
    if arch != model:
        raise ConfigError(f"--init-from {source} holds {arch} weights, but --model is "
                          f"{model}: pass --model {arch}")
    try:
        return pretrained_weights(arch, rest)
    except ValueError:
        names = ", ".join(f"{RELEASE_PREFIX}{n}" for n in ("DEFAULT", *WEIGHTS[arch]))
        raise ConfigError(f"--init-from {source}: torchvision publishes no {arch} weights "
                          f"{rest!r}; known: {names}") from None


def check_source(source, model: str) -> None:
    """Refuse a release name that cannot work, before anything is read or trained."""
    if is_release(source):
        release_for(source, model)


# --------------------------------------------------------------------------- reading


@dataclass
class Weights:
    """A state dict to start from. When the file is a minires run's checkpoint:
    ``classes``, the classes its head was trained on, and ``normalize``, whose statistics
    its inputs were normalised with (if it recorded them; else None)."""

    state: dict
    source: str
    classes: list | None = None
    normalize: str | None = None


def read_weights(source, model: str | None = None, root=None) -> Weights:
    """The weights ``source`` names (a file in any supported format, or a
    ``torchvision:`` release of ``model``'s weights, looked for under the data root
    ``root``)."""
    if is_release(source):
        path = weights_file(release_for(source, model), root)
        stored, where = load(path), f"{source} ({path})"
    else:
        path = os.fspath(source)
        if not os.path.exists(path) and model in WEIGHTS and \
                str(path).upper().split(".")[-1] in ("DEFAULT", *WEIGHTS[model]):
            raise ConfigError(f"--init-from {path}: no such file. For torchvision's "
                              f"published weights write --init-from {RELEASE_PREFIX}{path}")
        stored, where = load(path), path
    run = {}
    if isinstance(stored, dict) and stored.get("format") == FORMAT:
        run = stored.get("config") or {}
        stored = stored.get("model")
    try:
        state = state_dict_from(stored, where)
    except CheckpointError as error:
        raise CheckpointError(f"{where}: holds no state dict (a dict of named arrays) to "
                              f"initialise a model from: {error}") from None
    classes = run.get("classes")
    return Weights(state, str(source), list(classes) if classes is not None else None,
                   run.get("normalize"))


# --------------------------------------------------------------------------- loading


def classifier_name(model) -> str:
    """The name of the model's last Linear layer: the head that fine-tuning replaces."""
    from ..nn import Linear

    names = [name for name, m in model.named_modules() if isinstance(m, Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layer to use as a head")
    return names[-1]


@dataclass
class InitReport:
    """What ``load_backbone`` copied: ``loaded`` of the model's ``total`` tensors. The
    classifier ``head`` (``head_tensors`` tensors) was loaded too when ``head_loaded``;
    ``counters`` BatchNorm counters absent from the file were set to 0."""

    source: str
    loaded: int
    total: int
    head: str
    head_tensors: int
    head_loaded: bool = False
    counters: int = 0

    def __str__(self) -> str:
        text = f"init-from {self.source}: loaded {self.loaded} of {self.total} tensors"
        if self.counters:
            text += (f" ({self.counters} BatchNorm counters num_batches_tracked, absent "
                     "from the file, set to 0)")
        if self.head_loaded:
            return text + (f", the classifier head '{self.head}' too: it was trained on "
                           "the same classes")
        return text + (f"; the classifier head '{self.head}' ({self.head_tensors} tensors) "
                       "starts fresh")


def load_backbone(model, state: dict, source: str = "the state dict",
                  keep_head: bool = False) -> InitReport:
    """Copy every tensor of ``state`` into ``model`` except the classifier head's (its
    head's too with ``keep_head``).

    The backbone must match exactly: the same names and shapes on both sides (a model
    of another architecture, or one trained on images with another number of channels,
    is a ``ConfigError`` that counts what matched). BatchNorm counters that files from
    before PyTorch 0.4.1 lack are set to 0, as PyTorch does. The head stays as the
    model initialised it: it belongs to the old task.
    """
    head = classifier_name(model)
    own = model.state_dict()

    def in_head(key):
        return key.startswith(head + ".")

    ours = {k: v for k, v in own.items() if keep_head or not in_head(k)}
    theirs = {k: v for k, v in state.items() if keep_head or not in_head(k)}
    counters = [k for k in ours if k not in theirs and k.endswith("num_batches_tracked")]
    missing = [k for k in ours if k not in theirs and k not in counters]
    unexpected = [k for k in theirs if k not in ours]
    reshaped = [k for k in ours if k in theirs
                and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    retyped = [k for k in ours if k in theirs and k not in reshaped
               and (numpy.dtype(theirs[k].dtype).kind == "f") != (ours[k].dtype.kind == "f")]
    if missing or unexpected or reshaped or retyped:
        matched = len(ours) - len(missing) - len(reshaped) - len(retyped)
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                problems.append(f"{len(keys)} {what} ({_some(keys)})")
        for what, keys, attr in (("shapes", reshaped, "shape"), ("dtypes", retyped, "dtype")):
            if keys:
                k = keys[0]
                there, here = getattr(theirs[k], attr), getattr(ours[k], attr)
                if attr == "shape":
                    there, here = tuple(there), tuple(here)
                problems.append(f"{len(keys)} of other {what} ({k}: {there} there, {here} "
                                "here)")
        raise ConfigError(f"--init-from {source}: its weights do not fit this model's "
                          f"{'layers' if keep_head else 'backbone'}: {matched} of {len(ours)} "
                          f"tensors match; {'; '.join(problems)}. Fine-tuning needs the same "
                          "architecture (only the classifier head may differ)")
    theirs = dict(theirs)
    for key in counters:
        theirs[key] = numpy.zeros((), dtype=numpy.int64)
    model.load_state_dict(theirs, strict=False)
    loaded = len(ours) - len(counters)
    return InitReport(str(source), loaded, len(own), head,
                      sum(1 for k in own if in_head(k)), keep_head, len(counters))


def _some(keys, n: int = 3) -> str:
    more = f", ... {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def init_from(model, path, freeze: bool, keep_head: bool = False) -> InitReport:
    """Fine-tuning: copy every weight of ``path`` except its classifier head (see
    ``load_backbone``); with ``freeze`` only the head trains. Returns what was loaded."""
    report = load_backbone(model, read_weights(path).state, source=str(path),
                           keep_head=keep_head)
    if freeze:
        freeze_backbone(model)
    return report


# --------------------------------------------------------------------------- what trains


def freeze_backbone(model) -> None:
    """Train only the classifier head (``fit`` also keeps the frozen BatchNorm layers'
    running statistics fixed)."""
    model.requires_grad_(False)
    for p in dict(model.named_modules())[classifier_name(model)].parameters():
        p.requires_grad_(True)


def freeze_batch_norm(model) -> int:
    """Freeze every BatchNorm layer: no gradient for its weight and bias, and (as ``fit``
    keeps such layers in eval mode) its running statistics stay as loaded. Returns how
    many layers; a model without any is a ``ConfigError``."""
    from ..nn.norm import _BatchNorm

    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        raise ConfigError(f"--freeze-bn: {type(model).__name__} has no BatchNorm layer")
    if not all(m.affine for m in layers):
        raise ConfigError("--freeze-bn: the model has BatchNorm layers without weight and "
                          "bias (affine=False); the training loop keeps the statistics of "
                          "a layer fixed only when it has weights, frozen")
    for m in layers:
        m.requires_grad_(False)
    return len(layers)


def param_groups(model, lr: float, backbone_lr_scale: float):
    """The trainable parameters for the optimizer: one list, or with a
    ``backbone_lr_scale`` other than 1 two groups, ``head`` (at ``lr``) then
    ``backbone`` (at ``lr * backbone_lr_scale``). The head comes first, so
    ``param_groups[0]['lr']``, which the metrics log, is ``--lr``'s schedule."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if backbone_lr_scale == 1:
        return [p for _, p in trainable]
    head = classifier_name(model) + "."
    return [{"params": [p for n, p in trainable if n.startswith(head)], "name": "head"},
            {"params": [p for n, p in trainable if not n.startswith(head)],
             "name": "backbone", "lr": lr * backbone_lr_scale}]


def group_lrs(config: dict, optimizer) -> list:
    """The planned (peak) learning rate of each parameter group of a run."""
    return [config["lr"] * (config["backbone_lr_scale"] if g.get("name") == "backbone"
                            else 1.0) for g in optimizer.param_groups]


def describe_training(model, optimizer, config: dict) -> str:
    """One line: which parameters train, at which learning rates, and BatchNorm's state."""
    total = len(list(model.parameters()))
    head = classifier_name(model)
    groups = optimizer.param_groups
    if len(groups) == 2:
        what = (f"the head '{head}' ({len(groups[0]['params'])} tensors) at lr "
                f"{config['lr']:g} and the backbone ({len(groups[1]['params'])} tensors) at "
                f"lr {config['lr'] * config['backbone_lr_scale']:g} (--backbone-lr-scale "
                f"{config['backbone_lr_scale']:g})")
    else:
        n = sum(len(g["params"]) for g in groups)
        what = (f"the head '{head}' only ({n} of {total} parameter tensors)"
                if config["freeze"] else f"{n} of {total} parameter tensors at lr "
                f"{config['lr']:g}")
    if config["freeze_bn"]:
        bn = "every BatchNorm layer is frozen (weights and running statistics)"
    elif config["freeze"]:
        bn = "the backbone's BatchNorm layers keep their running statistics"
    else:
        bn = "BatchNorm layers train and update their running statistics"
    return f"fine-tuning: trains {what}; {bn}"
