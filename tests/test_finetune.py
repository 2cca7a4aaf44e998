"""Fine-tuning what was trained elsewhere, through ``minires train`` and offline.

A tiny image folder is written here with Pillow (PNG and JPEG, two classes), and a
"pretrained" ResNet-18 is made here too (random weights and BatchNorm statistics, 1000
classes), saved as safetensors and as a PyTorch ``.pth`` without BatchNorm counters, as
torchvision's old files are. Runs are a few steps of ResNet-18 on 32x32 crops, on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import socket

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from test_resume import assert_same_run, signal_on_call
from test_weights import randomize

import minires as mr
from minires import backend
from minires.data import transforms as T
from minires.models import pretrained
from minires.optim import SGD
from minires.train import ConfigError, TrainingInterrupted, load_checkpoint, run_training
from minires.train.finetune import Weights, param_groups, read_weights
from minires.train.preprocessing import preprocessing
from minires.train.recipe import DEFAULTS, make_optimizer, make_scheduler

COLOURS = {"blue": (40, 60, 200), "red": (210, 40, 30)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """flowers/{train,val}/{blue,red}/: 6 and 3 noisy images per class, PNG and JPEG, of
    two sizes (the loader resizes them at load)."""
    root = tmp_path_factory.mktemp("images") / "flowers"
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for name, colour in COLOURS.items():
            os.makedirs(root / split / name)
            for i in range(count):
                shape = (40, 48, 3) if i % 3 else (50, 30, 3)
                pixels = np.clip(rng.normal(colour, 50, shape), 0, 255).astype(np.uint8)
                suffix = "png" if i % 2 else "jpg"
                Image.fromarray(pixels).save(root / split / name / f"{i}.{suffix}")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """{'model': a 'pretrained' resnet18, 'safetensors': its file, 'pth': a torch file
    of it without num_batches_tracked (None without torch)}."""
    where = tmp_path_factory.mktemp("weights")
    model = randomize(mr.models.resnet18(), seed=3)
    files = {"model": model, "safetensors": where / "resnet18.safetensors", "pth": None}
    mr.save_safetensors(model.state_dict(), files["safetensors"])
    try:
        import torch
    except ImportError:
        return files
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    files["pth"] = where / "resnet18.pth"
    torch.save(state, files["pth"])
    return files


def quick(folder, *more):
    """3 steps of 4 images per epoch, 32x32 crops."""
    return ["train", "--model", "resnet18", "--dataset", f"imagefolder:{folder}",
            "--image-size", "32", "--batch-size", "4", "--lr", "0.01", "--no-progress", *more]


def numpy_state(state: dict) -> dict:
    return {k: np.asarray(backend.to_numpy(getattr(v, "data", v))) for k, v in state.items()}


def pth_file(weights):
    if weights["pth"] is None:
        pytest.skip("torch is not installed: no .pth file to read")
    return weights["pth"]


# --------------------------------------------------------------------------- --init-from FILE


@pytest.mark.parametrize("kind, loaded", [("safetensors", "loaded 120 of 122 tensors;"),
                                          ("pth", "loaded 100 of 122 tensors (20 BatchNorm "
                                                  "counters num_batches_tracked")])
def test_init_from_a_file_reports_the_match_keeps_the_frozen_backbone_bit_for_bit(
        kind, loaded, folder, weights, capsys, tmp_path):
    source = weights[kind] if kind == "safetensors" else pth_file(weights)
    out = tmp_path / "run"
    code, printed, err = run_cli(quick(folder, "--epochs", "2", "--init-from", str(source),
                                       "--freeze", "--out", str(out)), capsys)
    assert code == 0, err
    assert loaded in printed and "the classifier head 'fc' (2 tensors) starts fresh" in printed
    assert "trains the head 'fc' only (2 of 62 parameter tensors)" in printed
    after = numpy_state(load_checkpoint(out / "checkpoint.mr")["model"])
    before = numpy_state(weights["model"].state_dict())
    assert after["fc.weight"].shape == (2, 512) and after["fc.bias"].shape == (2,)  # new head
    for key, value in before.items():
        if key.startswith("fc."):
            continue
        if key.endswith("num_batches_tracked") and kind == "pth":
            value = np.zeros((), np.int64)  # absent from the file: 0, as PyTorch sets it
        assert after[key].dtype == value.dtype, key
        np.testing.assert_array_equal(after[key], value, err_msg=key)  # BN statistics too
    fresh = numpy_state(mr.models.resnet18(num_classes=2).state_dict())
    assert not np.array_equal(after["fc.weight"], fresh["fc.weight"])  # the head trained


def test_freeze_bn_keeps_every_batchnorm_layer_while_the_rest_trains(folder, weights, capsys,
                                                                      tmp_path):
    out = tmp_path / "run"
    code, printed, err = run_cli(quick(folder, "--epochs", "1", "--init-from",
                                       str(weights["safetensors"]), "--freeze-bn", "--out",
                                       str(out)), capsys)
    assert code == 0, err
    assert "every BatchNorm layer is frozen (weights and running statistics)" in printed
    after = numpy_state(load_checkpoint(out / "checkpoint.mr")["model"])
    before = numpy_state(weights["model"].state_dict())
    batch_norm = [k for k in before if ".bn" in f".{k}" or "downsample.1" in k]
    assert len(batch_norm) == 20 * 5  # weight, bias, running mean and var, counter
    for key in batch_norm:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert not np.array_equal(after["conv1.weight"], before["conv1.weight"])  # trains
    assert not np.array_equal(after["layer4.1.conv2.weight"], before["layer4.1.conv2.weight"])


def test_read_weights_unwraps_and_remembers_a_runs_classes(folder, weights, tmp_path, capsys):
    mr.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in
                                        weights["model"].state_dict().items()}},
            tmp_path / "wrapped.mr")
    wrapped = read_weights(tmp_path / "wrapped.mr")
    assert isinstance(wrapped, Weights) and wrapped.classes is None
    assert sorted(wrapped.state) == sorted(weights["model"].state_dict())
    out = tmp_path / "run"
    code, _, err = run_cli(quick(folder, "--epochs", "1", "--init-from",
                                 str(tmp_path / "wrapped.mr"), "--freeze", "--out", str(out)),
                           capsys)
    assert code == 0, err
    run = read_weights(out / "checkpoint.mr")
    assert run.classes == ["blue", "red"] and run.normalize == "imagenet"


# --------------------------------------------------------------------------- parameter groups


@pytest.mark.parametrize("schedule, warmup", [("multistep", 0), ("cosine", 0), ("cosine", 2),
                                              ("onecycle", 0), ("constant", 1)])
def test_every_schedule_keeps_the_backbone_at_its_scale_of_the_head_lr(schedule, warmup):
    model = mr.models.resnet18(num_classes=3)
    config = {**DEFAULTS, "lr": 0.05, "backbone_lr_scale": 0.1, "schedule": schedule,
              "warmup_epochs": warmup, "epochs": 8, "init_from": "x"}
    optimizer = make_optimizer(config, param_groups(model, 0.05, 0.1))
    head, backbone = optimizer.param_groups
    assert (head["name"], backbone["name"]) == ("head", "backbone")
    assert [id(p) for p in head["params"]] == [id(model.fc.weight), id(model.fc.bias)]
    assert len(backbone["params"]) == 60
    scheduler, per_batch = make_scheduler(config, optimizer, steps_per_epoch=3)
    seen = set()
    for _ in range(8 * (3 if per_batch else 1)):
        assert backbone["lr"] == pytest.approx(0.1 * head["lr"], rel=1e-12, abs=1e-15)
        seen.add(round(head["lr"], 12))
        if scheduler is not None:
            scheduler.step()
    assert len(seen) > 1 or schedule == "constant"  # the schedule did move both


def test_one_group_without_a_scale():
    model = mr.models.resnet18(num_classes=3)
    groups = param_groups(model, 0.1, 1.0)
    assert len(SGD(groups, lr=0.1).param_groups) == 1 and len(groups) == 62


def two_groups(folder, out, **more):
    return dict(model="resnet18", dataset=f"imagefolder:{folder}", image_size=32,
                batch_size=4, lr=0.02, epochs=2, progress=False, schedule="onecycle",
                backbone_lr_scale=0.1, out=str(out), **more)


def test_a_two_group_run_resumes_bit_for_bit(folder, weights, tmp_path, monkeypatch):
    source = str(weights["safetensors"])
    straight = run_training(**two_groups(folder, tmp_path / "straight", init_from=source))
    saved = load_checkpoint(straight["checkpoint"])["optimizer"]["param_groups"]
    assert [g["name"] for g in saved] == ["head", "backbone"]
    assert saved[1]["max_lr"] == pytest.approx(0.1 * saved[0]["max_lr"])
    signal_on_call(monkeypatch, mr.Tensor, "backward", 5)  # epoch 2, during step 2
    with pytest.raises(TrainingInterrupted):
        run_training(**two_groups(folder, tmp_path / "stopped", init_from=source))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.mr")["run"]["step"] == 2
    run_training(resume=str(tmp_path / "stopped" / "checkpoint.mr"), progress=False)
    assert_same_run(tmp_path / "straight", tmp_path / "stopped")


# --------------------------------------------------------------------------- two stages


def test_two_stages_through_the_cli_the_second_keeps_the_trained_head(folder, weights, capsys,
                                                                      tmp_path):
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    code, _, err = run_cli(quick(folder, "--epochs", "1", "--init-from",
                                 str(weights["safetensors"]), "--freeze", "--out",
                                 str(stage1)), capsys)
    assert code == 0, err
    code, printed, err = run_cli(quick(folder, "--epochs", "1", "--init-from",
                                       str(stage1 / "checkpoint.mr"), "--backbone-lr-scale",
                                       "0.1", "--out", str(stage2)), capsys)
    assert code == 0, err
    assert "loaded 122 of 122 tensors, the classifier head 'fc' too" in printed
    assert "the backbone (60 tensors) at lr 0.001 (--backbone-lr-scale 0.1)" in printed
    first = numpy_state(load_checkpoint(stage1 / "checkpoint.mr")["model"])
    second = load_checkpoint(stage2 / "checkpoint.mr")
    groups = second["optimizer"]["param_groups"]
    assert [(g["name"], g["initial_lr"], len(g["params"])) for g in groups] == \
        [("head", 0.01, 2), ("backbone", pytest.approx(0.001), 60)]
    weights2 = numpy_state(second["model"])
    assert not np.array_equal(first["layer1.0.conv1.weight"], weights2["layer1.0.conv1.weight"])
    assert not np.array_equal(first["bn1.running_mean"], weights2["bn1.running_mean"])

    code, printed, err = run_cli(["eval", "--checkpoint", str(stage2 / "checkpoint.mr")],
                                 capsys)
    assert code == 0, err
    accuracy = second["history"][-1]["test_acc"]
    assert f"test (6 images): loss {second['history'][-1]['test_loss']:.4f}, accuracy " \
        f"{100 * accuracy:.2f}%" in printed


def test_eval_refuses_a_folder_of_other_classes(folder, weights, capsys, tmp_path):
    out = tmp_path / "run"
    run_cli(quick(folder, "--epochs", "1", "--init-from", str(weights["safetensors"]),
                  "--freeze", "--out", str(out)), capsys)
    other = tmp_path / "other"
    for split in ("train", "val"):
        os.makedirs(other / split / "green")
        Image.new("RGB", (40, 40), (0, 200, 0)).save(other / split / "green" / "0.png")
    code, _, err = run_cli(["eval", "--checkpoint", str(out / "checkpoint.mr"), "--dataset",
                            f"imagefolder:{other}"], capsys)
    assert_one_line_error(code, err, "['blue', 'red']", "['green']")


# --------------------------------------------------------------------------- released weights


def publish(monkeypatch, tmp_path, data: bytes, port: int):
    """Register ``data`` as torchvision's resnet18 IMAGENET1K_V1, served from 127.0.0.1."""
    prefix = hashlib.sha256(data).hexdigest()[:8]
    release = pretrained.PretrainedWeights("resnet18", "IMAGENET1K_V1", f"resnet18-{prefix}.pth",
                                           url_base=f"http://127.0.0.1:{port}/")
    monkeypatch.setitem(pretrained.WEIGHTS, "resnet18", {"IMAGENET1K_V1": release})
    return release, tmp_path / "cache" / "weights" / release.filename


def closed_port() -> int:
    with socket.socket() as sock:  # nothing listens there once closed: connection refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("name", ["torchvision:IMAGENET1K_V1", "torchvision:resnet18.DEFAULT",
                                  "torchvision:ResNet18_Weights.IMAGENET1K_V1"])
def test_a_release_name_resolves_through_the_cache_without_a_download(name, folder, weights,
                                                                      capsys, tmp_path,
                                                                      monkeypatch):
    data = pth_file(weights).read_bytes()
    _, cached = publish(monkeypatch, tmp_path, data, closed_port())
    os.makedirs(cached.parent)
    cached.write_bytes(data)  # placed by hand: the download would be refused
    out = tmp_path / "run"
    code, printed, err = run_cli(quick(folder, "--epochs", "1", "--init-from", name, "--freeze",
                                       "--data-root", str(tmp_path / "cache"), "--out",
                                       str(out)), capsys)
    assert code == 0, err
    assert f"init-from {name}: loaded 100 of 122 tensors" in printed
    saved = load_checkpoint(out / "checkpoint.mr")
    np.testing.assert_array_equal(numpy_state(saved["model"])["layer3.1.conv2.weight"],
                                  weights["model"].layer3[1].conv2.weight.detach().numpy())
    assert saved["config"]["normalize"] == "imagenet"


def test_an_absent_release_offline_is_one_line_saying_where_it_goes(folder, capsys, tmp_path,
                                                                    monkeypatch):
    pytest.importorskip("torch")  # without torch the error says to install it first
    release, cached = publish(monkeypatch, tmp_path, b"not there", closed_port())
    code, _, err = run_cli(quick(folder, "--init-from", "torchvision:IMAGENET1K_V1",
                                 "--data-root", str(tmp_path / "cache"), "--out",
                                 str(tmp_path / "run")), capsys)
    *notice, error = err.splitlines()  # the notice: "downloading ... weights: URL -> path"
    assert code == 2 and notice == [f"downloading torchvision resnet18 IMAGENET1K_V1 weights: "
                                    f"{release.url} -> {cached}"]
    assert error.startswith("minires: error: ") and "Traceback" not in err
    for fragment in (release.url, "are you offline?", f"save it as {cached}",
                     release.sha256_prefix):
        assert fragment in error
    assert not (tmp_path / "run").exists() and not cached.exists()


@pytest.mark.parametrize("args, fragments", [
    (["--backbone-lr-scale", "0.1"], ["--backbone-lr-scale needs --init-from"]),
    (["--init-from", "w.mr", "--freeze", "--backbone-lr-scale", "0.1"],
     ["--backbone-lr-scale and --freeze"]),
    (["--init-from", "w.mr", "--backbone-lr-scale", "0"], ["--backbone-lr-scale", "> 0"]),
    (["--freeze-bn"], ["--freeze-bn needs --init-from"]),
    (["--image-size", "0"], ["--image-size", "got 0"]),
    (["--normalize", "imagenet21k"], ["--normalize", "imagenet21k"]),
    (["--init-from", "torchvision:IMAGENET1K_V1", "--model", "resnet20"],
     ["torchvision releases are known for resnet18, resnet34, resnet50", "'resnet20'"]),
    (["--init-from", "torchvision:resnet34.DEFAULT", "--model", "resnet18"],
     ["holds resnet34 weights", "--model is resnet18"]),
    (["--init-from", "torchvision:IMAGENET1K_V9", "--model", "resnet18"],
     ["no resnet18 weights 'IMAGENET1K_V9'", "torchvision:IMAGENET1K_V1"]),
    (["--init-from", "IMAGENET1K_V1", "--model", "resnet18"],
     ["no such file", "--init-from torchvision:IMAGENET1K_V1"]),
])
def test_fine_tuning_mistakes_are_one_line(args, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--dataset", "cifar10-sample", *args], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "runs").exists()


def test_freeze_bn_on_a_model_without_batchnorm_is_an_error(tmp_path, capsys):
    mr.save(mr.models.get_model("mlp", in_features=3072).state_dict(), tmp_path / "w.mr")
    code, _, err = run_cli(["train", "--model", "mlp", "--dataset", "cifar10-sample",
                            "--init-from", str(tmp_path / "w.mr"), "--freeze-bn", "--out",
                            str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "--freeze-bn: MLP has no BatchNorm layer")


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("images, batches", [(9, 2), (10, 3), (8, 2), (1, 1)])
def test_a_last_batch_of_one_image_is_dropped(images, batches):
    from minires.train.recipe import make_loaders

    config = {**DEFAULTS, "dataset": "cifar10-sample", "limit_train": images, "batch_size": 4}
    train, _ = make_loaders(config)
    assert len(train) == batches
    assert sum(len(labels) for _, labels in train) == min(images, 4 * batches)


def test_image_folders_get_imagenet_preprocessing_as_documented():
    config = {**DEFAULTS, "dataset": "imagefolder:photos"}
    prep = preprocessing(config)
    assert prep.load_size == 256
    train, test = prep.train.transforms, prep.test.transforms
    assert [type(t).__name__ for t in train] == ["RandomResizedCrop", "RandomHorizontalFlip",
                                                 "Normalize"]
    assert train[0].size == (224, 224) and train[0].scale == (0.08, 1.0)
    assert [type(t).__name__ for t in test] == ["CenterCrop", "Normalize"]
    assert test[1].mean == T.IMAGENET_MEAN and test[1].std == T.IMAGENET_STD
    small = preprocessing({**config, "image_size": 32, "augment": False})
    assert small.load_size == 37 and small.train.transforms == small.test.transforms
    assert small.test.transforms[0].size == (32, 32)


def test_cifar_keeps_its_statistics_unless_the_weights_are_a_release():
    config = {**DEFAULTS, "dataset": "cifar10-sample"}
    assert preprocessing(config).test.transforms[-1].mean == T.CIFAR10_MEAN
    release = preprocessing({**config, "init_from": "torchvision:DEFAULT", "image_size": 64})
    assert release.test.transforms[-1].mean == T.IMAGENET_MEAN
    assert [type(t).__name__ for t in release.train.transforms] == [
        "RandomCrop", "RandomHorizontalFlip", "Resize", "Normalize"]
    assert preprocessing({**config, "normalize": "imagenet"}).test.transforms[-1].mean == \
        T.IMAGENET_MEAN


def test_random_resized_crop_is_resize_of_the_crop_it_drew(device):
    x = np.random.default_rng(0).random((8, 3, 40, 52)).astype(np.float32)
    crop = T.RandomResizedCrop(24)
    images = backend.to_device(x, device)
    with backend.random_stream("test", 1):  # the boxes are drawn on the images' device
        boxes = crop.boxes(backend.array_module(images), 8, 40, 52)
        top, left, h, w = (backend.to_numpy(a) for a in boxes)
    with backend.random_stream("test", 1):
        y = backend.to_numpy(crop(images))
    assert y.shape == (8, 3, 24, 24) and y.dtype == np.float32
    for n in range(8):
        assert 0 <= top[n] and top[n] + h[n] <= 40 and 0 <= left[n] and left[n] + w[n] <= 52
        part = x[n:n + 1, :, top[n]:top[n] + h[n], left[n]:left[n] + w[n]]
        np.testing.assert_allclose(y[n], T.Resize((24, 24))(part)[0], atol=1e-6)


def test_random_resized_crop_draws_areas_and_ratios_in_range_and_falls_back():
    crop = T.RandomResizedCrop(16, scale=(0.25, 0.5), ratio=(0.5, 2.0))
    top, left, h, w = crop.boxes(np, 2000, 100, 100)
    area = h * w / 1e4
    assert 0.23 < area.min() and area.max() < 0.52  # whole pixels round a little
    assert 0.45 < (w / h).min() and (w / h).max() < 2.1
    assert len(np.unique(top)) > 30 and len(np.unique(left)) > 30  # placed all over
    assert area.mean() == pytest.approx(0.375, abs=0.01)
    # no try fits a 10x10 image with a ratio of 3 or more: the centre, clamped to the ratio
    top, left, h, w = T.RandomResizedCrop(8, scale=(1, 1), ratio=(3, 4)).boxes(np, 4, 10, 10)
    assert (h.tolist(), w.tolist(), top.tolist(), left.tolist()) == \
        ([3] * 4, [10] * 4, [3] * 4, [0] * 4)


def test_random_resized_crop_refuses_bad_settings():
    for kwargs, message in [({"size": 0}, "size"), ({"size": 8, "scale": (0.5, 0.2)}, "scale"),
                            ({"size": 8, "ratio": (0, 1)}, "ratio")]:
        with pytest.raises(ValueError, match=message):
            T.RandomResizedCrop(**kwargs)
    with pytest.raises(TypeError, match="RandomResizedCrop: expected float images"):
        T.RandomResizedCrop(8)(np.zeros((1, 3, 10, 10), np.uint8))


def test_run_training_refuses_the_same_mistakes_with_a_config_error():
    with pytest.raises(ConfigError, match="--freeze-bn needs --init-from"):
        run_training(freeze_bn=True, dataset="cifar10-sample")
