"""Training: overfitting, exact resume, checkpoints, fine-tuning and the command line
(tests/test_resume.py stops runs at every kind of moment, tests/test_cli.py is the
command's own)."""

import json

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires.data import CIFAR10, MNIST
from minires.models import get_model
from minires.optim import SGD
from minires.tools.cli import main
from minires.train import load_checkpoint, run_training
from minires.train.recipe import init_from

QUICK = dict(model="residual_mlp", dataset="mnist-sample", limit_train=256, batch_size=64,
             lr=0.05, schedule="constant", progress=False)


def weights(model) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_resnet20_overfits_two_batches():
    mr.manual_seed(0)
    data = CIFAR10(sample=True)
    x = mr.tensor((data.data[:16].astype(np.float32) / 255 - 0.5) / 0.25)
    y = mr.tensor(data.targets[:16])
    model = get_model("resnet20", num_classes=10)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(30):
        for batch in (slice(0, 8), slice(8, 16)):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    # memorised: in training mode (batch statistics) every image is right, the loss ~0
    with mr.no_grad():
        for batch in (slice(0, 8), slice(8, 16)):
            logits = model(x[batch])
            assert F.cross_entropy(logits, y[batch]).item() < 0.01
            assert (logits.argmax(dim=1) == y[batch]).numpy().all()
        # in eval mode the running statistics of 8-image batches stand in for the
        # batch's own: most images stay right (chance would be 10%), and which one or
        # two flip depends on float32 rounding
        model.eval()
        accuracy = (model(x).argmax(dim=1) == y).numpy().mean()
    assert accuracy >= 0.75, accuracy


def test_resume_gives_the_same_weights_as_one_straight_run(tmp_path):
    straight = run_training(**QUICK, epochs=3, out=str(tmp_path / "a"))
    run_training(**QUICK, epochs=2, out=str(tmp_path / "b"))
    resumed = run_training(**QUICK, epochs=3, out=str(tmp_path / "b"),
                           resume=str(tmp_path / "b" / "checkpoint.mr"))
    a, b = weights(straight["model"]), weights(resumed["model"])
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]


def test_an_exception_inside_a_step_never_saves_a_half_done_step(tmp_path, monkeypatch):
    """Only a signal stops a run at a step boundary (tests/test_resume.py); an error
    raised from inside a step leaves the last checkpoint, of a finished epoch, as it was."""
    calls = {"n": 0}
    original = SGD.step

    def step_then_fail(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 2, after its second batch (4 batches per epoch)
            raise KeyboardInterrupt

    monkeypatch.setattr(SGD, "step", step_then_fail)
    with pytest.raises(KeyboardInterrupt):
        run_training(**QUICK, epochs=2, out=str(tmp_path / "b"))
    monkeypatch.setattr(SGD, "step", original)
    checkpoint = load_checkpoint(tmp_path / "b" / "checkpoint.mr")
    assert checkpoint["epoch"] == 1 and checkpoint["loader"]["batch"] == 0
    assert (checkpoint["run"]["epoch"], checkpoint["run"]["step"]) == (2, 0)


def test_outputs_log_plot_and_checkpoint(tmp_path):
    result = run_training(**QUICK, epochs=2, out=str(tmp_path))
    rows = [json.loads(line) for line in open(result["log"])]
    assert [r["epoch"] for r in rows] == [1, 2]
    expected = {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"}
    assert expected <= set(rows[0])
    with open(result["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    checkpoint = load_checkpoint(result["checkpoint"])
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["model"] == "residual_mlp"
    assert rows[-1]["test_acc"] > 0.2  # 8 steps on 256 MNIST images: above chance (0.1)


def test_fine_tuning_replaces_the_head_and_can_freeze_the_rest(tmp_path):
    source = run_training(**QUICK, epochs=1, out=str(tmp_path))
    model = get_model("residual_mlp", num_classes=4)
    init_from(model, source["checkpoint"], freeze=True)
    old, new = weights(source["model"]), weights(model)
    for key in old:
        if key.startswith("fc."):
            assert new[key].shape[0] == 4
        else:
            np.testing.assert_array_equal(old[key], new[key], err_msg=key)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]


def test_the_head_is_not_copied_even_with_as_many_classes(tmp_path):
    source = run_training(**QUICK, epochs=1, out=str(tmp_path))
    mr.manual_seed(7)
    model = get_model("residual_mlp", num_classes=10)
    fresh = model.fc.weight.detach().numpy().copy()
    init_from(model, source["checkpoint"], freeze=False)
    np.testing.assert_array_equal(model.fc.weight.detach().numpy(), fresh)  # a new head


def test_frozen_batch_norm_keeps_its_running_statistics():
    from minires.train.loop import train_mode

    model = get_model("resnet20", num_classes=10)
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    train_mode(model)
    assert model.training and model.fc.training and not model.bn1.training
    before = model.bn1.running_mean.numpy().copy()
    model(mr.randn(4, 3, 32, 32))
    np.testing.assert_array_equal(model.bn1.running_mean.numpy(), before)


def test_cli_train_then_eval(tmp_path, capsys):
    out = str(tmp_path / "run")
    main(["train", "--model", "residual_mlp", "--dataset", "mnist-sample", "--epochs", "1",
          "--limit-train", "128", "--batch-size", "64", "--out", out, "--no-progress"])
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and "checkpoint.mr" in printed and "curves.png" in printed
    main(["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint.mr")])
    assert "accuracy" in capsys.readouterr().out


def test_cli_info(capsys):
    main(["info"])
    printed = capsys.readouterr().out
    assert "minires" in printed and "data root" in printed


def test_mnist_sample_is_there():
    assert len(MNIST(sample=True)) == 2000


@pytest.mark.cuda
def test_training_steps_never_make_the_host_wait_for_the_gpu():
    """Queued behind a kernel that keeps the GPU busy for about two seconds, whole
    training steps (batch copy, augmentation, forward, backward, SGD step) must return
    to the host at once: a step that read anything back from the GPU would wait for
    that kernel. Only the end of the epoch, which reads the loss, may wait."""
    if not mr.cuda.is_available():
        pytest.skip("no CUDA GPU (or CuPy) available")
    from minires import backend
    from minires.train import DEFAULTS
    from minires.train.loop import train_one_epoch
    from minires.train.recipe import make_loaders

    cupy = backend.cupy
    spin = cupy.RawKernel(r"""
    extern "C" __global__ void spin(long long cycles) {
        long long start = clock64();
        while (clock64() - start < cycles) { }
    }""", "spin")
    config = {**DEFAULTS, "dataset": "cifar10-sample", "limit_train": 96, "batch_size": 32,
              "device": "cuda"}
    loader, _ = make_loaders(config)
    model = get_model("resnet20", num_classes=10).to("cuda")
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    train_one_epoch(model, loader, optimizer)  # compiles the kernels, fills CuPy's pools

    gpu_busy_after_step = []

    def watched(batches):
        for batch in batches:
            yield batch
            gpu_busy_after_step.append(not busy.done)  # the loop asked for the next batch

    spin((1,), (1,), (np.int64(4 * 10**9),))  # 4e9 clock cycles: about 2 s
    busy = cupy.cuda.get_current_stream().record()
    result = train_one_epoch(model, watched(loader), optimizer)
    assert gpu_busy_after_step == [True] * len(loader)
    assert busy.done and np.isfinite(result["loss"])  # the epoch's end read the loss
