"""ResNets (CIFAR and torchvision ImageNet), plain nets, MLPs and the model registry."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import minires as mr
import minires.nn as nn
from minires import models
from minires.models import BasicBlock, Bottleneck, ZeroPadShortcut


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- counts

# Option A (parameter-free shortcuts) gives the paper's "0.27M" for ResNet-20; these are
# the counts of akamaster/pytorch_resnet_cifar10 too. Option B adds the two 1x1
# projections + BN: 16*32 + 2*32 + 32*64 + 2*64 = 2752 parameters at every depth.
CIFAR_COUNTS = {
    "resnet20": (269722, 272474),
    "resnet32": (464154, 466906),
    "resnet44": (658586, 661338),
    "resnet56": (853018, 855770),
    "resnet110": (1727962, 1730714),
}


@pytest.mark.parametrize("name", list(CIFAR_COUNTS))
def test_cifar_resnet_parameter_counts(name):
    count_a, count_b = CIFAR_COUNTS[name]
    assert n_params(models.get_model(name, 10)) == count_a  # option A is the default
    assert n_params(models.get_model(name, 10, shortcut="B")) == count_b
    assert count_b - count_a == 2752
    plain = models.get_model(name.replace("resnet", "plain"), 10)
    assert n_params(plain) == count_a  # the same layers, no shortcut parameters


@pytest.mark.parametrize("name, count, keys", [
    ("resnet18", 11689512, 122), ("resnet34", 21797672, 218), ("resnet50", 25557032, 320)])
def test_imagenet_resnet_parameter_counts(name, count, keys):
    model = models.get_model(name, num_classes=1000)
    assert n_params(model) == count  # torchvision's numbers
    assert len(model.state_dict()) == keys


# --------------------------------------------------------------------------- torchvision names


def torchvision_spec(block: str, layers, num_classes=1000) -> OrderedDict:
    """The state_dict keys and shapes of torchvision.models.resnet18/34/50, written out
    from torchvision's source (torchvision itself is not installable here)."""
    spec = OrderedDict()

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            spec[f"{prefix}.{name}"] = (c,)
        spec[f"{prefix}.num_batches_tracked"] = ()

    spec["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            p = f"layer{i + 1}.{j}"
            if block == "basic":
                out = planes
                spec[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                spec[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                out = planes * 4
                spec[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                spec[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                spec[f"{p}.conv3.weight"] = (out, planes, 1, 1)
                bn(f"{p}.bn3", out)
            if j == 0 and (stride != 1 or inplanes != out):
                spec[f"{p}.downsample.0.weight"] = (out, inplanes, 1, 1)
                bn(f"{p}.downsample.1", out)
            inplanes = out
    spec["fc.weight"] = (num_classes, inplanes)
    spec["fc.bias"] = (num_classes,)
    return spec


@pytest.mark.parametrize("name, block, layers, count, n_keys", [
    ("resnet18", "basic", (2, 2, 2, 2), 11689512, 122),
    ("resnet50", "bottleneck", (3, 4, 6, 3), 25557032, 320),
])
def test_state_dict_matches_torchvision(name, block, layers, count, n_keys):
    spec = torchvision_spec(block, layers)
    # the spec itself agrees with torchvision's published facts
    assert len(spec) == n_keys
    assert sum(math.prod(s) for k, s in spec.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == count
    model = getattr(models, name)()
    sd = model.state_dict()
    assert list(sd) == list(spec)  # same keys, same order
    assert {k: v.shape for k, v in sd.items()} == dict(spec)
    # a torchvision-shaped checkpoint (numpy arrays) loads key for key
    rng = np.random.default_rng(0)
    checkpoint = {k: rng.standard_normal(s).astype(np.float32) if s else np.array(7)
                  for k, s in spec.items()}
    assert model.load_state_dict(checkpoint) == ([], [])
    np.testing.assert_array_equal(model.fc.weight.data, checkpoint["fc.weight"])
    assert int(model.layer1[0].bn1.num_batches_tracked.item()) == 7


def test_torchvision_literal_keys_and_v15_stride():
    sd18 = models.resnet18().state_dict()
    assert sd18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd18["layer4.1.bn2.running_var"].shape == (512,)
    assert sd18["fc.weight"].shape == (1000, 512)
    assert "layer1.0.downsample.0.weight" not in sd18
    r50 = models.resnet50(num_classes=7)
    sd50 = r50.state_dict()
    assert sd50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd50["layer3.5.conv3.weight"].shape == (1024, 256, 1, 1)
    assert sd50["fc.weight"].shape == (7, 2048)
    # v1.5: the stride is on the 3x3 convolution of the Bottleneck
    assert r50.layer2[0].conv1.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)
    assert r50.layer2[0].downsample[0].stride == (2, 2)
    assert r50.conv1.kernel_size == (7, 7) and r50.conv1.stride == (2, 2)
    assert isinstance(r50.maxpool, nn.MaxPool2d)


def test_imagenet_forward_and_cifar_stem():
    x = mr.randn(2, 3, 32, 32)  # two images: BN in training needs > 1 value at 1x1
    model = models.resnet18(num_classes=5)
    assert model(x).shape == (2, 5)
    cifar = models.resnet18(num_classes=10, cifar_stem=True)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert len(cifar.state_dict()) == 122
    feats = []
    cifar.layer4.register_forward_hook(lambda m, a, out: feats.append(out.shape))
    assert cifar(x).shape == (2, 10)
    assert feats == [(2, 512, 4, 4)]  # 32 -> 32 (stem) -> 32, 16, 8, 4 (stages)
    assert models.resnet50(num_classes=3)(x).shape == (2, 3)


# --------------------------------------------------------------------------- CIFAR nets


def test_cifar_resnet_structure_and_names():
    model = models.resnet20()
    names = [n for n, _ in model.named_modules()]
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer2.0.downsample",
                 "layer3.2.conv2", "layer3.2.bn2", "avgpool", "fc"):
        assert name in names
    assert "layer4" not in names
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [3, 3, 3]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 20  # 19 convolutions + fc: "ResNet-20"
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer3[0].conv1.stride == (2, 2)
    assert model.layer1[0].downsample is None and model.layer2[1].downsample is None
    assert model.fc.in_features == 64
    text = repr(model)
    assert text.startswith("ResNet(\n  (conv1): Conv2d(3, 16, kernel_size=(3, 3), "
                           "stride=(1, 1), padding=(1, 1), bias=False)\n  (bn1): BatchNorm2d(16")
    assert "(downsample): ZeroPadShortcut(16, 32, stride=2)" in text
    assert "(fc): Linear(in_features=64, out_features=10, bias=True)" in text


def test_option_a_and_b_shortcuts():
    x = mr.randn(2, 3, 32, 32)
    a, b = models.resnet20(shortcut="A"), models.resnet20(shortcut="B")
    assert a(x).shape == (2, 10) and b(x).shape == (2, 10)
    assert isinstance(a.layer2[0].downsample, ZeroPadShortcut)
    assert list(a.layer2[0].downsample.parameters()) == []
    down = b.layer3[0].downsample
    assert isinstance(down, nn.Sequential)
    assert down[0].weight.shape == (64, 32, 1, 1) and down[0].stride == (2, 2)
    assert isinstance(down[1], nn.BatchNorm2d)
    # option A: every other pixel, the input channels first, zeros after
    h = mr.randn(2, 16, 8, 8)
    y = a.layer2[0].downsample(h)
    assert y.shape == (2, 32, 4, 4)
    np.testing.assert_array_equal(y.data[:, :16], h.data[:, :, ::2, ::2])
    assert np.all(y.data[:, 16:] == 0)
    with pytest.raises(ValueError, match="shortcut"):
        models.resnet20(shortcut="C")
    with pytest.raises(ValueError, match="6n"):
        models.cifar_resnet(21)


def test_plain_net_has_no_shortcut():
    resnet, plain = models.resnet20(), models.plain20()
    assert all(m.downsample is None and not m.residual
               for m in plain.modules() if isinstance(m, BasicBlock))
    assert list(plain.state_dict()) == list(resnet.state_dict())
    plain.load_state_dict(resnet.state_dict())  # identical layers, key for key
    resnet.eval()
    plain.eval()
    x = mr.randn(2, 3, 16, 16)
    assert not np.allclose(resnet(x).data, plain(x).data, atol=1e-3)
    # and a residual block really adds its input: with conv2's output zeroed it is relu(x)
    block = resnet.layer1[0]
    nn.init.zeros_(block.bn2.weight)
    h = mr.rand(2, 16, 8, 8)
    np.testing.assert_allclose(block(h).data, h.data, atol=1e-6)
    plain_block = plain.layer1[0]
    nn.init.zeros_(plain_block.bn2.weight)
    nn.init.zeros_(plain_block.bn2.bias)
    assert np.all(plain_block(h).data == 0)
    with pytest.raises(ValueError, match="plain"):
        models.cifar_resnet(20, residual=False, zero_init_residual=True)


@pytest.mark.parametrize("shortcut, batch_norm", [("A", True), ("B", True), ("A", False)])
def test_zero_init_residual_makes_blocks_shortcut_maps(shortcut, batch_norm):
    model = models.resnet20(shortcut=shortcut, zero_init_residual=True, batch_norm=batch_norm)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9
    for block in blocks:
        if batch_norm:
            assert np.all(block.bn2.weight.data == 0) and np.all(block.bn1.weight.data == 1)
        else:
            assert np.all(block.conv2.weight.data == 0)
        c = block.conv1.in_channels
        x = mr.rand(2, c, 8, 8)  # non-negative, as a ReLU output is
        shortcut_path = x if block.downsample is None else block.downsample(x)
        np.testing.assert_allclose(block(x).data, np.maximum(shortcut_path.data, 0),
                                   atol=1e-6)
    default = models.resnet20(shortcut=shortcut)
    assert all(np.all(m.bn2.weight.data == 1) for m in default.modules()
               if isinstance(m, BasicBlock))
    r50 = models.resnet50(zero_init_residual=True)
    assert np.all(r50.layer1[0].bn3.weight.data == 0)
    assert np.all(r50.layer1[0].bn2.weight.data == 1)


def test_resnet_without_batch_norm():
    model = models.resnet20(batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.layer1[0].bn1, nn.Identity)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    bn_params = 2 * (16 + 3 * 2 * 16 + 3 * 2 * 32 + 3 * 2 * 64)
    assert n_params(model) == 269722 - bn_params
    assert list(model.buffers()) == []
    assert model(mr.randn(2, 3, 16, 16)).shape == (2, 10)
    b = models.resnet20(batch_norm=False, shortcut="B")
    assert isinstance(b.layer2[0].downsample[1], nn.Identity)


def test_cifar_resnet_initialisation():
    mr.manual_seed(0)
    model = models.resnet56()
    w = model.layer3[5].conv1.weight.data
    assert w.std() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)  # fan_out, relu
    assert all(np.all(m.weight.data == 1) and np.all(m.bias.data == 0)
               for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    mr.manual_seed(0)
    again = models.resnet56()
    np.testing.assert_array_equal(again.layer3[5].conv1.weight.data, w)


def test_train_eval_and_backward_through_resnet():
    model = models.resnet20()
    x = mr.randn(4, 3, 8, 8)
    loss = nn.CrossEntropyLoss()(model(x), mr.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    assert int(model.layer3[2].bn2.num_batches_tracked.item()) == 1
    model.eval()
    with mr.no_grad():
        y1, y2 = model(x), model(x)
    np.testing.assert_array_equal(y1.data, y2.data)
    assert int(model.layer3[2].bn2.num_batches_tracked.item()) == 1


# --------------------------------------------------------------------------- gradient checks


def _block_gradcheck(block, x_shape):
    block.double().train()
    x = mr.randn(*x_shape, dtype=mr.float64, requires_grad=True)
    params = list(block.parameters())
    assert mr.gradcheck(lambda x, *ps: block(x), [x, *params], rtol=1e-5, atol=1e-7,
                        max_full=300, n_directions=4)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_gradcheck_basic_block(shortcut):
    down = (ZeroPadShortcut(3, 4, stride=2) if shortcut == "A" else
            nn.Sequential(models.resnet.conv1x1(3, 4, 2), nn.BatchNorm2d(4)))
    block = BasicBlock(3, 4, stride=2, downsample=down)
    _block_gradcheck(block, (2, 3, 6, 6))


def test_gradcheck_identity_basic_block():
    _block_gradcheck(BasicBlock(3, 3), (2, 3, 4, 4))


def test_gradcheck_bottleneck():
    down = nn.Sequential(models.resnet.conv1x1(4, 8, 2), nn.BatchNorm2d(8))
    _block_gradcheck(Bottleneck(4, 2, stride=2, downsample=down), (2, 4, 5, 5))


def test_gradcheck_catches_a_broken_block():
    """The check above can fail: a block whose shortcut skips backward is caught."""
    block = BasicBlock(3, 3)
    block.double().train()
    x = mr.randn(2, 3, 4, 4, dtype=mr.float64, requires_grad=True)

    def broken(x):
        out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        return block.relu(out + x.detach())  # the shortcut's gradient is lost

    with pytest.raises(mr.GradcheckError):
        mr.gradcheck(broken, [x], max_full=300)


# --------------------------------------------------------------------------- MLPs


def test_residual_mlp():
    model = models.ResidualMLP()
    assert model(mr.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model(mr.randn(3, 784)).shape == (3, 10)
    assert len(model.blocks) == 4
    assert "blocks.3.fc2.weight" in model.state_dict()
    assert "blocks.0.bn1.running_mean" in model.state_dict()
    hidden = 784 * 256 + 2 * 256 + 4 * 2 * (256 * 256 + 2 * 256) + 256 * 10 + 10
    assert n_params(model) == hidden
    plain = models.ResidualMLP(in_features=20, hidden=8, num_blocks=2, num_classes=3,
                               batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert n_params(plain) == 20 * 8 + 8 + 2 * 2 * (8 * 8 + 8) + 8 * 3 + 3
    # the shortcut is real: with fc2 zeroed a block is relu(x)
    block = plain.blocks[0]
    nn.init.zeros_(block.fc2.weight)
    nn.init.zeros_(block.fc2.bias)
    h = mr.randn(4, 8)
    np.testing.assert_allclose(block(h).data, np.maximum(h.data, 0))


@pytest.mark.parametrize("activation, cls", [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid),
                                             ("tanh", nn.Tanh)])
def test_mlp_builder(activation, cls):
    model = models.mlp(depth=5, width=32, activation=activation)
    assert len(model.layers) == 5
    assert all(isinstance(block.activation, cls) for block in model.layers)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == [f"layers.{i}.fc" for i in range(5)] + ["fc"]
    assert model(mr.randn(3, 1, 28, 28)).shape == (3, 10)
    seen = []
    for i, block in enumerate(model.layers):
        block.fc.register_full_backward_hook(
            lambda m, gi, go, i=i: seen.append((i, go[0].shape)))
    model(mr.randn(3, 784)).sum().backward()
    assert sorted(seen) == [(i, (3, 32)) for i in range(5)]


def test_mlp_options():
    he = models.mlp(depth=3, width=512, init="he")
    assert he.layers[1].fc.weight.data.std() == pytest.approx(math.sqrt(2 / 512), rel=0.03)
    assert np.all(he.layers[1].fc.bias.data == 0)
    xavier = models.mlp(depth=3, width=512, init="xavier")
    assert xavier.layers[1].fc.weight.data.std() == pytest.approx(math.sqrt(1 / 512), rel=0.03)
    residual = models.mlp(depth=3, width=16, residual=True, in_features=20)
    assert [b.residual for b in residual.layers] == [False, True, True]
    block = residual.layers[1]
    nn.init.zeros_(block.fc.weight)
    h = mr.randn(4, 16)
    np.testing.assert_allclose(block(h).data, h.data)  # relu(0) + h
    bn = models.mlp(depth=2, width=16, batch_norm=True)
    assert isinstance(bn.layers[0].bn, nn.BatchNorm1d) and bn.layers[0].fc.bias is None
    assert isinstance(models.mlp(2, 8).layers[0].bn, nn.Identity)
    with pytest.raises(ValueError, match="activation"):
        models.mlp(2, 8, activation="gelu")
    with pytest.raises(ValueError, match="init"):
        models.mlp(2, 8, init="lecun")
    assert models.PlainMLP is models.MLP


# --------------------------------------------------------------------------- registry


def test_every_registered_name_builds_with_the_asked_number_of_classes():
    names = models.list_models()
    assert {"resnet20", "resnet56", "plain20", "resnet18", "resnet50", "residual_mlp",
            "mlp"} <= set(names)
    for name in names:
        assert models.get_model(name, num_classes=7).fc.out_features == 7, name
    assert models.get_model("plain56", 10).layer1[0].residual is False
    assert models.get_model("resnet20", 10, shortcut="B").layer2[0].downsample is not None
    assert models.get_model("mlp", 4, depth=2, width=8).fc.out_features == 4
    with pytest.raises(ValueError, match="unknown model 'resnet21'; available: resnet20"):
        models.get_model("resnet21", 10)


def test_a_model_registers_itself_with_one_decorator(capsys):
    """One edit adds a model: get_model, list_models, the error message and the
    command's --model help all know it; a second model of the same name is refused."""
    from minires.models import registry
    from minires.tools.cli import main

    @models.register_model()
    def tiny_net(num_classes=10):
        return models.mlp(1, 4, num_classes=num_classes, in_features=12)

    try:
        assert models.list_models()[-1] == "tiny_net"
        assert models.get_model("tiny_net", 3).fc.out_features == 3
        with pytest.raises(ValueError, match=r"available: .*tiny_net"):
            models.get_model("tiny_net2")
        with pytest.raises(SystemExit):
            main(["train", "--help"])
        assert "tiny_net" in capsys.readouterr().out
        with pytest.raises(ValueError, match="'tiny_net' is already registered"):
            models.register_model("tiny_net")(tiny_net)
        assert registry.takes("tiny_net", "num_classes")
        assert not registry.takes("tiny_net", "in_features")
    finally:
        del registry._MODELS["tiny_net"]
    assert "tiny_net" not in models.list_models()


# --------------------------------------------------------------------------- torch parity


def _torch_cifar_resnet(torch, n, shortcut, num_classes=10):
    """A PyTorch replica of the CIFAR ResNet, written from the paper, with our names."""
    tnn, tF = torch.nn, torch.nn.functional

    class PadShortcut(tnn.Module):
        def __init__(self, extra, stride):
            super().__init__()
            self.extra, self.stride = extra, stride

        def forward(self, x):
            return tF.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))

    class Block(tnn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = (PadShortcut(planes - inplanes, stride) if shortcut == "A"
                                   else tnn.Sequential(
                                       tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                       tnn.BatchNorm2d(planes)))

        def forward(self, x):
            out = self.bn2(self.conv2(tF.relu(self.bn1(self.conv1(x)))))
            return tF.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            inplanes = 16
            for i, planes in enumerate((16, 32, 64)):
                blocks = [Block(inplanes if j == 0 else planes, planes,
                                2 if i > 0 and j == 0 else 1) for j in range(n)]
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
                inplanes = planes
            self.fc = tnn.Linear(64, num_classes)

        def forward(self, x):
            x = tF.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet20_matches_torch_replica(shortcut):
    # float64: in float32 a ReLU input within ~1e-7 of zero (this batch has one at
    # 2.5e-7) may change sign between two correct implementations that round
    # differently, and BatchNorm's backward spreads that one gradient over its channel
    torch = pytest.importorskip("torch")
    ours = models.resnet20(shortcut=shortcut).double()
    ref = _torch_cifar_resnet(torch, 3, shortcut).double()
    assert list(ref.state_dict()) == list(ours.state_dict())
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy()))
                         for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16, 16))
    target = np.array([3, 7])
    loss = nn.CrossEntropyLoss()(ours(mr.tensor(x)), mr.tensor(target))
    ref_loss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)),
                                                 torch.from_numpy(target))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-10)
    loss.backward()
    ref_loss.backward()
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.data, ref_params[name].grad.numpy(), rtol=1e-7,
                                   atol=1e-10, err_msg=name)
    for key, value in ref.state_dict().items():  # running statistics updated alike
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=key)
