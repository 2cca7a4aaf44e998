"""The training loop: read it top to bottom.

One epoch = for every batch: forward, loss, backward, optimizer step (and the
scheduler, if it steps per batch). Running loss and accuracy stay on the device and are
read back (a host sync) only every ``log_every`` batches and at the end of the epoch.
After each epoch: evaluate on the test set, append a metrics line, save a checkpoint.
Ctrl-C saves a checkpoint where the run stands, mid-epoch, before stopping.
"""

from __future__ import annotations

import json
import os
import time

from tqdm import tqdm

from .. import backend, no_grad
from ..nn import functional as F
from ..nn.norm import _BatchNorm
from .checkpoint import save_checkpoint


def evaluate(model, loader) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader``, in eval mode, without a graph."""
    was_training = model.training
    model.eval()
    loss_sum = correct = 0
    count = 0
    with no_grad():
        for images, labels in loader:
            logits = model(images)
            loss_sum = loss_sum + F.cross_entropy(logits, labels, reduction="sum").data
            correct = correct + (logits.data.argmax(axis=1) == labels.data).sum()
            count += labels.shape[0]
    model.train(was_training)
    loss_sum, correct = backend.host_floats(loss_sum, correct)
    return {"loss": loss_sum / count, "acc": correct / count}


def train_mode(model) -> None:
    """``model.train()``, except BatchNorm layers whose weights are frozen: a frozen
    layer should not drift, so its running statistics stay fixed as well."""
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and params and not any(p.requires_grad
                                                                  for p in params):
            module.eval()


def train_one_epoch(model, loader, optimizer, scheduler=None, step_per_batch: bool = False,
                    progress=None, log_every: int = 20) -> dict:
    train_mode(model)
    loss_sum = correct = 0  # device scalars: no host sync per batch
    count = 0
    start = time.perf_counter()
    for step, (images, labels) in enumerate(loader, 1):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None and step_per_batch:
            scheduler.step()
        n = labels.shape[0]
        loss_sum = loss_sum + loss.data * n
        correct = correct + (logits.data.argmax(axis=1) == labels.data).sum()
        count += n
        if progress is not None:
            progress.update(1)
            if step % log_every == 0:  # the one host sync per logging step
                loss_total, correct_total = backend.host_floats(loss_sum, correct)
                progress.set_postfix(loss=f"{loss_total / count:.3f}",
                                     acc=f"{correct_total / count:.3f}",
                                     img_s=f"{count / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    loss_sum, correct = backend.host_floats(loss_sum, correct)
    return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1),
            "seconds": seconds, "images_per_s": count / seconds if seconds else 0.0}


def fit(model, optimizer, train_loader, test_loader, epochs: int, *, scheduler=None,
        step_per_batch: bool = False, out_dir=None, start_epoch: int = 0, history=None,
        config: dict | None = None, progress: bool = True, log_every: int = 20) -> list:
    """Train for epochs ``start_epoch + 1 .. epochs``; return the metrics history.

    With ``out_dir``, writes ``metrics.jsonl`` (one JSON line per epoch),
    ``checkpoint.mr`` (after every epoch and on Ctrl-C) and ``curves.png``.
    """
    history = list(history or [])
    paths = _paths(out_dir)
    epoch, training = start_epoch, False

    def checkpoint(completed: int) -> None:
        if out_dir is not None:
            save_checkpoint(paths["checkpoint"], model=model, optimizer=optimizer,
                            scheduler=scheduler, loader=train_loader, epoch=completed,
                            history=history, config=config)

    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            with tqdm(total=len(train_loader), desc=f"epoch {epoch}/{epochs}", unit="batch",
                      disable=not progress, leave=True) as bar:
                training = True
                train = train_one_epoch(model, train_loader, optimizer, scheduler,
                                        step_per_batch, bar, log_every)
                training = False
                test = evaluate(model, test_loader)
                bar.set_postfix(loss=f"{train['loss']:.3f}", acc=f"{train['acc']:.3f}",
                                test_acc=f"{test['acc']:.3f}",
                                img_s=f"{train['images_per_s']:.0f}")
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None and not step_per_batch:
                scheduler.step()
            row = {"epoch": epoch, "train_loss": train["loss"], "train_acc": train["acc"],
                   "test_loss": test["loss"], "test_acc": test["acc"], "lr": lr,
                   "seconds": train["seconds"], "images_per_s": train["images_per_s"]}
            history.append(row)
            if out_dir is not None:
                with open(paths["metrics"], "a") as f:
                    f.write(json.dumps(row) + "\n")
                checkpoint(epoch)
    except KeyboardInterrupt:
        if training:  # mid-epoch: the loader remembers how many batches it served
            checkpoint(epoch - 1)
        # otherwise the checkpoint of the last finished epoch is already the right one
        print(f"\ninterrupted: checkpoint in {paths.get('checkpoint')}; continue with --resume")
        raise
    if out_dir is not None and history:
        from .plots import plot_curves

        plot_curves(history, paths["curves"], title=(config or {}).get("model", ""))
    return history


def _paths(out_dir) -> dict:
    if out_dir is None:
        return {}
    os.makedirs(out_dir, exist_ok=True)
    return {"checkpoint": os.path.join(out_dir, "checkpoint.mr"),
            "metrics": os.path.join(out_dir, "metrics.jsonl"),
            "curves": os.path.join(out_dir, "curves.png")}
