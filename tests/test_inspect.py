"""Gradient-flow diagnostics: the monitor measures what it says, costs nothing when off,
and minires's own models show the effects docs/gradient_flow.md describes, in size.

The ratio tests use batches of 8 random 16x16 images (the documented numbers use batch
128 at 32x32; the ratios barely move, see docs/gradient_flow.md). Their bounds are set
from minires's measurements with a margin, and the "broken" tests check that a
shortcut removed, BatchNorm missing or a wrong initialisation breaks them.
"""

import json
import math

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires.inspect import GradientMonitor, History, Profile, gradient_flow
from minires.inspect.experiments import degradation, train_and_watch
from minires.models import BasicBlock, get_model, mlp
from minires.nn import init
from minires.optim import SGD
from minires.tools.cli import main

# ---------------------------------------------------------------- the monitor


def small_mlp():
    mr.manual_seed(0)
    return mlp(3, 16, activation="relu", in_features=12, num_classes=4)


def batch(n=10, features=12, classes=4):
    return mr.randn(n, features), mr.randint(0, classes, (n,))


def train_steps(model, optimizer, steps, x, y):
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_monitor_measures_each_statistic_by_hand():
    model = small_mlp()
    x, y = batch()
    optimizer = SGD(model.parameters(), lr=0.1)  # plain SGD: update = lr * grad
    # what the monitor should see at step 0, computed with hooks of our own
    seen = {}

    def record(module, args, out):
        seen["out"] = out.data.copy()
        out.register_hook(lambda g: seen.update(grad=g.data.copy()))

    handle = model.layers[1].register_forward_hook(record)
    relu = model.layers[1].activation.register_forward_hook(
        lambda m, a, out: seen.update(relu=out.data.copy()))
    w = model.layers[1].fc.weight
    w_before = w.data.copy()
    with GradientMonitor(model, optimizer) as monitor:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        g = w.grad.data.copy()
        optimizer.step()
    handle.remove()
    relu.remove()
    profile = monitor.history[0]
    assert profile.layers == ["layers.0", "layers.1", "layers.2"]
    assert profile["act_grad_norm"][1] == pytest.approx(np.linalg.norm(seen["grad"]), rel=1e-5)
    assert profile["act_mean"][1] == pytest.approx(seen["out"].mean(), rel=1e-5)
    assert profile["act_std"][1] == pytest.approx(seen["out"].std(), rel=1e-5)
    dead = 1 - (seen["relu"] > 0).any(axis=0).mean()
    assert profile["dead_relu"][1] == pytest.approx(dead)
    k = profile.params.index("layers.1.fc.weight")
    assert profile["param_grad_norm"][k] == pytest.approx(np.linalg.norm(g), rel=1e-5)
    assert profile["param_weight_norm"][k] == pytest.approx(np.linalg.norm(w_before), rel=1e-5)
    assert profile["param_update_ratio"][k] == pytest.approx(
        0.1 * np.linalg.norm(g) / np.linalg.norm(w_before), rel=1e-4)
    # a layer's weight gradient norm is the norm of all its parameters' gradients together
    members = [i for i, n in enumerate(profile.params) if n.startswith("layers.1.")]
    assert profile["weight_grad_norm"][1] == pytest.approx(
        math.sqrt(sum(profile["param_grad_norm"][i] ** 2 for i in members)), rel=1e-6)


def test_monitor_records_only_the_chosen_steps_and_costs_nothing_when_off():
    model = small_mlp()
    x, y = batch()
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    monitor = GradientMonitor(model, optimizer, steps=range(1, 10, 3))
    attached = []
    with monitor:
        for _ in range(8):
            attached.append(hook_count(model) > 0)  # hooks exist for this step?
            train_steps(model, optimizer, 1, x, y)
    assert attached == [False, True, False, False, True, False, False, True]
    assert list(monitor.history.steps) == [1, 4, 7]
    assert monitor.history["act_grad_norm"].shape == (3, 3)
    assert np.isfinite(monitor.history["update_ratio"]).all()
    # off: no hook anywhere, the optimizer's own step method
    assert hook_count(model) == 0
    assert "step" not in vars(optimizer) and not monitor.active
    train_steps(model, optimizer, 2, x, y)
    assert len(monitor.history) == 3


def test_monitor_ignores_evaluation_and_step_without_optimizer():
    model = small_mlp()
    x, y = batch()
    with GradientMonitor(model) as monitor:
        with mr.no_grad():
            model(x)  # an evaluation pass must not count
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        profile = monitor.step()
    assert profile is monitor.history[0]
    assert np.isnan(profile["update_ratio"]).all()  # no optimizer step was seen
    direct = model.layers[0](model.flatten(x)).data
    assert profile["act_mean"][0] == pytest.approx(direct.mean(), rel=1e-5)
    with GradientMonitor(model, SGD(model.parameters(), lr=0.1)) as watching:
        with pytest.raises(RuntimeError, match="optimizer"):
            watching.step()


def test_profile_and_history_as_table_and_json(tmp_path):
    model = small_mlp()
    x, y = batch()
    optimizer = SGD(model.parameters(), lr=0.1)
    with GradientMonitor(model, optimizer, layers="weights") as monitor:
        train_steps(model, optimizer, 2, x, y)
    history = monitor.history
    assert history.layers == ["layers.0.fc", "layers.1.fc", "layers.2.fc", "fc"]
    assert "dead_relu" in history[0].table() and "layers.2.fc" in history[0].table()
    assert np.isnan(history["dead_relu"]).all()  # a Linear layer holds no ReLU
    path = history.save(tmp_path / "flow.json")
    assert json.load(open(path))["format"] == "minires-gradient-history"
    back = History.load(path)
    np.testing.assert_allclose(back["act_grad_norm"], history["act_grad_norm"])
    np.testing.assert_array_equal(back.steps, history.steps)
    one = Profile.load(history[1].save(tmp_path / "one.json"))
    np.testing.assert_allclose(one["param_grad_norm"], history[1]["param_grad_norm"])


def test_gradient_flow_leaves_the_model_as_it_was():
    mr.manual_seed(0)
    model = get_model("resnet20")
    model.eval()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    profile = gradient_flow(model, mr.randn(4, 3, 16, 16))
    assert len(profile) == 9 and profile.layers[0] == "layer1.0"
    assert profile.layers[-1] == "layer3.2"
    assert np.isfinite(profile["act_grad_norm"]).all()
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert hook_count(model) == 0


# ---------------------------------------------------------------- measured effects

_RATIOS = {}


def ratio(name: str, seed: int = 0, **kwargs) -> float:
    """First/last block gradient-norm ratio at initialisation (cached per setting)."""
    key = (name, seed, tuple(sorted(kwargs.items())))
    if key not in _RATIOS:
        mr.manual_seed(seed)
        if name.startswith("mlp"):
            model, x = mlp(20, 256, **kwargs), mr.randn(32, 784)
        else:
            model, x = get_model(name, **kwargs), mr.randn(8, 3, 16, 16)
        _RATIOS[key] = gradient_flow(model, x).ratio()
    return _RATIOS[key]


# Bounds with margin around minires's measurements at this setting (docs/gradient_flow.md
# has batch 128 at 32x32): each is asserted for a working model and must fail for a
# broken one.

def check_bn_resnet(r20: float, r56: float) -> None:
    """With BatchNorm the ResNet's gradient grows only mildly toward the input."""
    assert 1.5 < r20 < 9, f"ResNet-20 first/last ratio {r20:.3g}, expected about 4"
    assert 3 < r56 < 40, f"ResNet-56 first/last ratio {r56:.3g}, expected about 12"


def check_bn_plain(r20: float, r56: float) -> None:
    """With BatchNorm the plain net's gradient explodes toward the input, with depth."""
    assert 9 < r20 < 60, f"plain-20 first/last ratio {r20:.3g}, expected about 15"
    assert 300 < r56 < 1e5, f"plain-56 first/last ratio {r56:.3g}, expected about 3e3"


def check_no_bn(plain56: float, resnet56: float) -> None:
    """Without BatchNorm the plain net's gradient shrinks toward the input while the
    unnormalised residual stack's explodes."""
    assert 0.001 < plain56 < 1, f"plain-56 without BN: ratio {plain56:.3g}, expected about 0.03"
    assert resnet56 > 500, f"ResNet-56 without BN: ratio {resnet56:.3g}, expected about 4e3"


def check_mlp(sigmoid: float, tanh: float, relu: float, residual: float) -> None:
    assert sigmoid < 1e-9, f"sigmoid MLP: ratio {sigmoid:.3g}, expected about 1e-12"
    assert 0.05 < tanh < 1, f"tanh MLP: ratio {tanh:.3g}, expected about 0.25"
    assert 0.4 < relu < 5, f"ReLU MLP (He init): ratio {relu:.3g}, expected about 1.4"
    assert residual > 500, f"ReLU MLP with shortcuts: ratio {residual:.3g}, expected about 4e3"


def test_with_batchnorm_plain_nets_explode_toward_the_input_and_shortcuts_tame_them():
    r = {name: ratio(name) for name in ("plain20", "resnet20", "plain56", "resnet56")}
    check_bn_plain(r["plain20"], r["plain56"])
    check_bn_resnet(r["resnet20"], r["resnet56"])
    assert r["plain56"] > 100 * r["resnet56"]
    assert r["plain56"] > 30 * r["plain20"]  # the plain net's problem grows with depth


def test_without_batchnorm_residual_stacks_explode_unless_the_branch_starts_at_zero():
    plain56 = ratio("plain56", batch_norm=False)
    resnet56 = ratio("resnet56", batch_norm=False)
    check_no_bn(plain56, resnet56)
    tamed = ratio("resnet56", batch_norm=False, zero_init_residual=True)
    assert 0.1 < tamed < 3, f"zero-init ResNet-56 without BN: ratio {tamed:.3g}"
    bn_zero = ratio("resnet56", zero_init_residual=True)
    assert 0.1 < bn_zero < 3, f"zero-init ResNet-56: ratio {bn_zero:.3g}"


def test_deep_mlp_shows_the_classic_vanishing_gradient():
    sig = ratio("mlp", activation="sigmoid", init="xavier")
    tanh = ratio("mlp", activation="tanh", init="xavier")
    relu = ratio("mlp", activation="relu", init="he")
    res = ratio("mlp", activation="relu", init="he", residual=True)
    check_mlp(sig, tanh, relu, res)
    # BatchNorm cures the sigmoid's vanishing gradient; ReLU + BN explodes like a plain
    # CNN with BN, and the shortcuts tame it
    assert 0.3 < ratio("mlp", activation="sigmoid", init="xavier", batch_norm=True) < 10
    relu_bn = ratio("mlp", activation="relu", init="he", batch_norm=True)
    res_bn = ratio("mlp", activation="relu", init="he", residual=True, batch_norm=True)
    assert relu_bn > 15 and 2 < res_bn < 20 and relu_bn > 3 * res_bn


# ---------------------------------------------------------------- the checks catch bugs


def test_a_broken_shortcut_fails_the_resnet_check(monkeypatch):
    def forward_without_shortcut(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))

    monkeypatch.setattr(BasicBlock, "forward", forward_without_shortcut)
    mr.manual_seed(0)
    broken = gradient_flow(get_model("resnet20"), mr.randn(8, 3, 16, 16)).ratio()
    with pytest.raises(AssertionError, match="ResNet-20"):
        check_bn_resnet(broken, ratio("resnet56"))


def test_a_missing_batchnorm_fails_the_checks():
    with pytest.raises(AssertionError, match="ResNet-56"):
        check_bn_resnet(ratio("resnet20"), ratio("resnet56", batch_norm=False))
    with pytest.raises(AssertionError, match="plain-56"):
        check_bn_plain(ratio("plain20"), ratio("plain56", batch_norm=False))


def test_a_wrong_initialisation_fails_the_checks(monkeypatch):
    # ReLU layers with Xavier's init: the signal and the gradient shrink at every layer
    relu_xavier = ratio("mlp", activation="relu", init="xavier")
    with pytest.raises(AssertionError, match="ReLU MLP"):
        check_mlp(1e-12, 0.25, relu_xavier, 4e3)
    # He init with twice the right standard deviation: BatchNorm would hide it, so the
    # unnormalised plain net shows it (each layer doubles the gradient on its way back)
    right = ratio("plain20", batch_norm=False)
    assert 0.02 < right < 2
    kaiming = init.kaiming_normal_

    def too_wide(tensor, *args, **kwargs):
        kaiming(tensor, *args, **kwargs)
        tensor.data *= 2
        return tensor

    monkeypatch.setattr(init, "kaiming_normal_", too_wide)
    mr.manual_seed(0)
    wrong = gradient_flow(get_model("plain20", batch_norm=False), mr.randn(8, 3, 16, 16))
    assert not 0.02 < wrong.ratio() < 2


# ---------------------------------------------------------------- degradation


def fit_one_batch(name: str, x, y, steps: int = 16, lr: float = 0.05) -> float:
    """Training loss after ``steps`` SGD steps on the one batch (x, y)."""
    mr.manual_seed(0)
    model = get_model(name)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.item())


def test_degradation_in_a_few_steps_on_a_subset():
    """The cheap version of the degradation test: 16 SGD steps fitting one batch of 32
    shipped CIFAR images (averaged down to 8x8). plain-56 fits it worse than plain-20;
    ResNet-56 fits it as well as ResNet-20. Measured losses: plain-20 0.75, plain-56
    2.10, ResNet-20 0.03, ResNet-56 0.002 (on four other batches: plain-56 above plain-20
    by 1.2 to 1.5, both ResNets below 0.08)."""
    from minires.inspect.experiments import cifar_loaders

    train, _ = cifar_loaders(batch_size=32, limit_train=32, limit_test=1, image_size=8)
    x, y = next(iter(train))
    loss = {name: fit_one_batch(name, x, y)
            for name in ("plain20", "plain56", "resnet20", "resnet56")}
    assert loss["plain56"] > loss["plain20"] + 0.7, loss
    assert loss["resnet56"] < loss["resnet20"] + 0.1, loss
    assert loss["resnet56"] < loss["plain56"] - 1.5, loss


@pytest.mark.slow
def test_degradation_on_the_shipped_sample(tmp_path):
    """plain-56 trains worse than plain-20 over the same run, ResNet-56 does not
    (the command and numbers are in docs/gradient_flow.md)."""
    result = degradation(out=str(tmp_path), log=None)  # about 15 minutes on a CPU
    err = {name: 1 - s["train_acc"] for name, s in result["summary"].items()}
    # measured: plain-20 10.5%, plain-56 82.9%, ResNet-20 0.0%, ResNet-56 0.9%
    assert err["plain56"] > err["plain20"] + 0.3, err
    assert err["resnet56"] < err["resnet20"] + 0.15, err
    assert err["resnet56"] < err["plain20"], err


# ---------------------------------------------------------------- the command


def test_gradients_command_writes_figures_and_numbers(tmp_path, capsys):
    out = tmp_path / "resnet"
    main(["gradients", "resnet", "--depths", "8", "--variants", "bn", "no-bn",
          "--batch-size", "4", "--image-size", "8", "--out", str(out)])
    ratios = json.load(open(out / "ratios.json"))["ratios"]
    assert set(ratios) == {"plain-8", "ResNet-8", "plain-8 no BN", "ResNet-8 no BN"}
    for name in ("resnet_bn.png", "resnet_bn.svg", "resnet_no_bn.png", "ratios.txt",
                 "profiles.json"):
        assert (out / name).stat().st_size > 0, name
    assert "ResNet-8 no BN" in capsys.readouterr().out
    main(["gradients", "mlp", "--depth", "4", "--width", "16", "--batch-size", "8",
          "--out", str(tmp_path / "mlp")])
    mlp_ratios = json.load(open(tmp_path / "mlp" / "ratios.json"))["ratios"]
    assert len(mlp_ratios) == 8 and (tmp_path / "mlp" / "mlp_bn.png").exists()


def test_gradients_command_profiles_a_checkpoint(tmp_path, capsys):
    from minires.train import save_checkpoint

    mr.manual_seed(0)
    model = get_model("resnet20")
    optimizer = SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "c.mr", model=model, optimizer=optimizer, epoch=0, history=[],
                    config={"model": "resnet20"})
    main(["gradients", "model", "--checkpoint", str(tmp_path / "c.mr"), "--batch-size", "2",
          "--image-size", "8", "--out", str(tmp_path / "m")])
    profile = Profile.load(tmp_path / "m" / "profile.json")
    assert len(profile) == 9
    assert "ResNet-20 (checkpoint)" in capsys.readouterr().out


def test_monitor_works_with_fit_and_builds_a_heatmap(tmp_path):
    from minires.inspect.experiments import cifar_loaders
    from minires.inspect.plots import plot_error_curves, plot_heatmap

    train, test = cifar_loaders(batch_size=16, limit_train=48, limit_test=16, image_size=8)
    run = train_and_watch("plain20", train, test, epochs=2,
                          monitor_every=2)
    flow = run["flow"]
    assert list(flow.steps) == [0, 2, 4] and flow["act_grad_norm"].shape == (3, 9)
    files = plot_heatmap(flow, tmp_path / "heat") + plot_error_curves(
        {"plain": {"plain-20": run["history"]}}, tmp_path / "err.png")
    assert all((tmp_path / f).stat().st_size > 0 for f in files)
    assert hook_count(run["model"]) == 0


def test_layers_can_be_chosen_by_name():
    model = small_mlp()
    with pytest.raises(ValueError, match="no module named"):
        GradientMonitor(model, layers=["layers.9"])
    monitor = GradientMonitor(model, layers=["layers.2", "fc"])
    assert monitor.layer_names == ["layers.2", "fc"]
