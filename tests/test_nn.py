"""nn.Module machinery, layers, hooks and init."""

import math

import numpy as np
import pytest

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.nn import init

# --------------------------------------------------------------------------- helpers


class Net(nn.Module):
    """Attributes assigned in a deliberately non-alphabetical order."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(mr.ones(1))
        self.register_buffer("step", mr.zeros(1))
        self.register_buffer("cache", mr.zeros(2), persistent=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
        self.not_a_param = mr.ones(3)  # a plain tensor attribute is neither

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x)))) * self.scale


def numpy_of(t):
    return mr.backend.to_numpy(t.data)


# --------------------------------------------------------------------------- registration


def test_registration_order_and_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == [
        "scale", "conv.weight", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "step", "cache", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["conv", "bn", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "conv", "bn", "head", "head.0", "head.1"]
    assert list(net.children())[1] is net.bn
    assert len(list(net.modules())) == 6
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())
    assert len(list(net.parameters(recurse=False))) == 1
    assert net.get_submodule("head.1") is net.head[1]
    assert net.get_parameter("head.1.bias") is net.head[1].bias


def test_setattr_rules():
    net = Net()
    with pytest.raises(TypeError, match="scale"):
        net.scale = mr.ones(1)  # a plain tensor cannot replace a parameter
    net.scale = None
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(TypeError, match="step"):
        net.step = np.zeros(1)  # buffers hold Tensors
    new = mr.ones(1)
    net.step = new
    assert net.step is new and dict(net.named_buffers())["step"] is new
    net.conv = nn.Identity()  # replacing a child keeps its place in the order
    assert [n for n, _ in net.named_children()] == ["conv", "bn", "head"]
    del net.bn
    assert not hasattr(net, "bn")
    with pytest.raises(KeyError):
        net.register_buffer("a.b", mr.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        net.register_buffer("head", mr.zeros(1))


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]


def test_sequential_and_module_list():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1], nn.ReLU)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert [n for n, _ in seq[1:].named_children()] == ["1", "2"]
    with pytest.raises(IndexError):
        seq[3]
    assert seq(mr.randn(5, 2)).shape == (5, 1)
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.Tanh())
    assert len(ml) == 4 and isinstance(ml[3], nn.Tanh)
    assert [n for n, _ in ml.named_parameters()][:2] == ["0.weight", "0.bias"]
    del ml[0]
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2"]


# --------------------------------------------------------------------------- state_dict


def test_state_dict_keys_and_values():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == ["scale", "step", "conv.weight", "bn.weight", "bn.bias",
                        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
                        "head.1.weight", "head.1.bias"]  # "cache" is not persistent
    assert all(isinstance(v, mr.Tensor) and not v.requires_grad for v in sd.values())
    assert sd["bn.num_batches_tracked"].dtype == np.int64
    assert sd["bn.num_batches_tracked"].shape == ()
    assert net.state_dict(keep_vars=True)["conv.weight"] is net.conv.weight


def test_state_dict_round_trip():
    a, b = Net(), Net()
    x = mr.randn(2, 3, 4, 4)
    a(x)  # move a's running statistics away from their initial values
    a.eval()
    b.eval()
    assert not np.allclose(a(x).data, b(x).data)
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert int(b.bn.num_batches_tracked.item()) == 1
    # numpy arrays are accepted too, and copied in (not aliased)
    sd = {k: v.numpy().copy() for k, v in a.state_dict().items()}
    sd["conv.weight"][...] = 0
    b.load_state_dict(sd)
    assert np.all(b.conv.weight.data == 0) and not np.all(a.conv.weight.data == 0)


def test_load_state_dict_strict_errors():
    net = Net()
    sd = net.state_dict()
    del sd["bn.bias"]
    sd["extra.weight"] = mr.zeros(1)
    with pytest.raises(RuntimeError) as error:
        Net().load_state_dict(sd)
    message = str(error.value)
    assert "Net" in message
    assert 'Missing key(s) in state_dict: "bn.bias"' in message
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in message
    result = Net().load_state_dict(sd, strict=False)
    assert result.missing_keys == ["bn.bias"] and result.unexpected_keys == ["extra.weight"]
    assert result == (["bn.bias"], ["extra.weight"])


def test_load_state_dict_shape_mismatch_names_key_and_shapes():
    target = Net()
    before = target.conv.weight.data.copy()
    sd = Net().state_dict()
    sd["head.1.weight"] = mr.zeros(3, 64)
    for strict in (True, False):  # a shape mismatch is an error even when not strict
        with pytest.raises(RuntimeError) as error:
            target.load_state_dict(sd, strict=strict)
        message = str(error.value)
        assert "size mismatch for head.1.weight" in message
        assert "(3, 64)" in message and "(2, 64)" in message
    np.testing.assert_array_equal(target.conv.weight.data, before)  # nothing was copied


# --------------------------------------------------------------------------- modes, moves


def test_train_eval_changes_batchnorm():
    bn = nn.BatchNorm2d(3)
    x = mr.randn(4, 3, 5, 5) * 3 + 2
    assert bn.training
    y_train = bn(x)
    # training mode: batch statistics, so each channel of the output has mean 0
    np.testing.assert_allclose(y_train.data.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * x.data.mean(axis=(0, 2, 3)),
                               rtol=1e-5)
    unbiased = x.data.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * unbiased, rtol=1e-5)
    seq = nn.Sequential(bn)
    assert seq.eval() is seq and not bn.training
    stats = bn.running_mean.data.copy()
    y_eval = bn(x)
    expected = (x.data - bn.running_mean.data.reshape(1, 3, 1, 1)) / np.sqrt(
        bn.running_var.data.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y_eval.data, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.running_mean.data, stats)  # eval updates nothing
    assert int(bn.num_batches_tracked.item()) == 1
    seq.train()
    assert bn.training


def test_batchnorm_options_and_dims():
    x = mr.randn(6, 3)
    cumulative = nn.BatchNorm1d(3, momentum=None)
    cumulative(x)
    cumulative(x * 2)  # with momentum=None the running mean is the plain average
    np.testing.assert_allclose(cumulative.running_mean.data, 1.5 * x.data.mean(0), rtol=1e-5)
    free = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(free.parameters()) == [] and list(free.buffers()) == []
    free.eval()  # no running statistics: batch statistics are used even in eval mode
    np.testing.assert_allclose(free(x).data.mean(0), 0, atol=1e-5)
    assert nn.BatchNorm1d(3)(mr.randn(4, 3, 5)).shape == (4, 3, 5)
    with pytest.raises(ValueError, match="2D or 3D"):
        nn.BatchNorm1d(3)(mr.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="4D"):
        nn.BatchNorm2d(3)(mr.randn(2, 3, 4))


def test_dropout_follows_module_mode():
    drop = nn.Dropout(0.5)
    x = mr.ones(100, 100)
    y = drop(x)
    assert 0.4 < (y.data == 0).mean() < 0.6
    assert set(np.unique(y.data)) <= {0.0, 2.0}
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x).data, x.data)


def test_to_keeps_parameter_identity(device):
    net = Net()
    params = list(net.parameters())
    net(mr.randn(2, 3, 4, 4)).sum().backward()
    assert net.to(device) is net
    assert all(p is q for p, q in zip(params, net.parameters()))
    assert all(p.device == device for p in net.parameters())
    assert all(p.grad.device == device for p in net.parameters())
    assert all(b.device == device for b in net.buffers())
    assert net(mr.randn(2, 3, 4, 4, device=device)).device == device
    net.cpu()
    assert all(p is q and p.device == "cpu" for p, q in zip(params, net.parameters()))


def test_double_and_float():
    net = Net()
    weight = net.conv.weight
    net.double()
    assert net.conv.weight is weight and weight.dtype == np.float64
    assert net.bn.running_var.dtype == np.float64
    assert net.bn.num_batches_tracked.dtype == np.int64  # integers are not converted
    assert net(mr.randn(2, 3, 4, 4, dtype=mr.float64)).dtype == np.float64
    net.float()
    assert weight.dtype == np.float32
    net.to(mr.float64)
    assert weight.dtype == np.float64


def test_zero_grad_requires_grad_apply():
    lin = nn.Linear(3, 2)
    lin(mr.randn(4, 3)).sum().backward()
    grad = lin.weight.grad
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad is grad and np.all(grad.data == 0)
    lin.zero_grad()
    assert lin.weight.grad is None
    lin.requires_grad_(False)
    assert not any(p.requires_grad for p in lin.parameters())
    seen = []
    seq = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    assert seq.apply(lambda m: seen.append(type(m).__name__)) is seq
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]  # children first


# --------------------------------------------------------------------------- repr


def test_repr_matches_pytorch_format():
    net = nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2)),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(16, 10),
        nn.LeakyReLU(0.2),
        nn.Sigmoid(),
    )
    expected = """Sequential(
  (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
  (1): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  (2): ReLU(inplace=True)
  (3): Sequential(
    (0): MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)
    (1): AvgPool2d(kernel_size=2, stride=2, padding=0)
  )
  (4): AdaptiveAvgPool2d(output_size=(1, 1))
  (5): Flatten(start_dim=1, end_dim=-1)
  (6): Dropout(p=0.1, inplace=False)
  (7): Linear(in_features=16, out_features=10, bias=True)
  (8): LeakyReLU(negative_slope=0.2)
  (9): Sigmoid()
)"""
    assert repr(net) == expected
    assert repr(nn.Conv2d(2, 4, 3, stride=2, dilation=2)) == \
        "Conv2d(2, 4, kernel_size=(3, 3), stride=(2, 2), dilation=(2, 2))"


# --------------------------------------------------------------------------- hooks


def test_forward_hooks_fire_replace_and_remove():
    lin = nn.Linear(3, 2)
    calls = []
    pre = lin.register_forward_pre_hook(lambda m, args: calls.append(("pre", args[0].shape)))
    post = lin.register_forward_hook(
        lambda m, args, out: calls.append(("post", m is lin, args[0].shape, out.shape)))
    lin(mr.randn(5, 3))
    assert calls == [("pre", (5, 3)), ("post", True, (5, 3), (5, 2))]
    pre.remove()
    post.remove()
    lin(mr.randn(5, 3))
    assert len(calls) == 2
    # a pre-hook's return value replaces the input, a forward hook's the output
    with lin.register_forward_pre_hook(lambda m, args: args[0] * 0):
        np.testing.assert_allclose(lin(mr.randn(5, 3)).data, np.broadcast_to(lin.bias.data,
                                                                             (5, 2)))
    handle = lin.register_forward_hook(lambda m, args, out: out * 0 + 7)
    assert np.all(lin(mr.randn(5, 3)).data == 7)
    handle.remove()
    assert not np.all(lin(mr.randn(5, 3)).data == 7)


def test_backward_hook_matches_retain_grad():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = mr.randn(2, 2, 5, 5, requires_grad=True)
    seen = []
    handle = conv.register_full_backward_hook(
        lambda m, gi, go: seen.append((m, gi, go)))
    y = conv(x)
    y.retain_grad()
    upstream = mr.randn(*y.shape)
    (y * upstream).sum().backward()
    assert len(seen) == 1
    module, grad_input, grad_output = seen[0]
    assert module is conv and len(grad_input) == 1 and len(grad_output) == 1
    assert grad_output[0].shape == (2, 3, 5, 5) and grad_input[0].shape == (2, 2, 5, 5)
    np.testing.assert_allclose(grad_output[0].data, y.grad.data)
    np.testing.assert_allclose(grad_output[0].data, upstream.data)
    np.testing.assert_allclose(grad_input[0].data, x.grad.data)
    handle.remove()
    conv(x).sum().backward()
    assert len(seen) == 1


def test_backward_hook_inside_a_network_and_without_input_grad():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    seen = {}
    for name in ("0", "2"):
        net.get_submodule(name).register_full_backward_hook(
            lambda m, gi, go, name=name: seen.__setitem__(name, (gi, go)))
    x = mr.randn(3, 4)  # the input needs no gradient, as an image batch
    hidden = []

    def keep(module, args, out):
        out.retain_grad()
        hidden.append(out)

    net[1].register_forward_hook(keep)
    net(x).sum().backward()
    grad_input, grad_output = seen["0"]
    assert grad_input == (None,)  # still called, as in PyTorch
    assert grad_output[0].shape == (3, 6)
    np.testing.assert_allclose(seen["2"][1][0].data, np.ones((3, 2)))
    # grad_input of the last layer is the gradient w.r.t. the ReLU output
    np.testing.assert_allclose(seen["2"][0][0].data, hidden[0].grad.data)


def test_backward_hook_can_replace_grad_input():
    lin = nn.Linear(3, 3)
    x = mr.randn(4, 3, requires_grad=True)
    lin(x).sum().backward()
    reference = x.grad.data.copy()
    x.grad = None
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 2,))
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0] + 1,))  # sees the first's result
    lin(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, reference * 2 + 1, rtol=1e-6)


def test_backward_hook_with_two_inputs():
    class Mul(nn.Module):
        def forward(self, a, scale, b):
            return a * b * scale

    mod = Mul()
    seen = []
    mod.register_full_backward_hook(lambda m, gi, go: seen.append(gi))
    a = mr.randn(3, requires_grad=True)
    b = mr.randn(3, requires_grad=True)
    mod(a, 2.0, b).sum().backward()
    (gi,) = seen
    assert len(gi) == 3 and gi[1] is None
    np.testing.assert_allclose(gi[0].data, a.grad.data)
    np.testing.assert_allclose(gi[2].data, b.grad.data)


def test_backward_hook_not_called_under_no_grad():
    lin = nn.Linear(2, 2)
    lin.register_full_backward_hook(lambda m, gi, go: pytest.fail("called"))
    with mr.no_grad():
        y = lin(mr.randn(1, 2))
    assert not y.requires_grad


# --------------------------------------------------------------------------- init


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError):
        init.calculate_gain("softplus")


@pytest.mark.parametrize("fn, mode, expected_std", [
    (init.kaiming_normal_, "fan_in", math.sqrt(2 / (64 * 9))),
    (init.kaiming_normal_, "fan_out", math.sqrt(2 / (128 * 9))),
    (init.kaiming_uniform_, "fan_in", math.sqrt(2 / (64 * 9))),
])
def test_kaiming_statistics(fn, mode, expected_std):
    w = mr.zeros(128, 64, 3, 3)
    assert fn(w, mode=mode, nonlinearity="relu") is w
    assert abs(w.data.mean()) < 0.05 * expected_std
    assert w.data.std() == pytest.approx(expected_std, rel=0.02)
    if fn is init.kaiming_uniform_:
        assert np.abs(w.data).max() <= math.sqrt(3) * expected_std


def test_xavier_and_simple_fills():
    w = mr.zeros(300, 200)
    init.xavier_normal_(w, gain=2.0)
    assert w.data.std() == pytest.approx(2 * math.sqrt(2 / 500), rel=0.02)
    init.xavier_uniform_(w)
    bound = math.sqrt(6 / 500)
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
    init.uniform_(w, -3, -2)
    assert w.data.min() >= -3 and w.data.max() < -2
    init.normal_(w, 5, 0.1)
    assert w.data.mean() == pytest.approx(5, abs=0.01)
    assert np.all(init.ones_(w).data == 1) and np.all(init.zeros_(w).data == 0)
    assert np.all(init.constant_(w, 0.5).data == 0.5)
    with pytest.raises(ValueError, match="fewer than 2"):
        init.xavier_uniform_(mr.zeros(5))


def test_default_layer_init_matches_pytorch_and_is_seeded():
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform_(a=sqrt(5)) works out to this
    assert np.abs(lin.weight.data).max() <= bound
    assert lin.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(lin.bias.data).max() <= bound
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(conv.weight.data).max() <= bound
    assert conv.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert np.abs(conv.bias.data).max() <= bound and conv.bias.data.std() > bound / 3
    assert lin.weight.dtype == np.float32
    mr.manual_seed(123)
    a = nn.Conv2d(3, 4, 3)
    mr.manual_seed(123)
    b = nn.Conv2d(3, 4, 3)
    c = nn.Conv2d(3, 4, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(b.weight.data, c.weight.data)
    bn = nn.BatchNorm2d(5)
    assert np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)


# --------------------------------------------------------------------------- torch parity


def _torch():
    return pytest.importorskip("torch")


def test_linear_and_conv_match_torch():
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1)
    ref = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    ref.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in conv.state_dict().items()})
    np.testing.assert_allclose(conv(mr.tensor(x)).data,
                               ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    conv = nn.Conv2d(3, 2, (3, 2), dilation=2, bias=False)
    ref = torch.nn.Conv2d(3, 2, (3, 2), dilation=2, bias=False)
    ref.weight.data = torch.from_numpy(conv.weight.data.copy())
    np.testing.assert_allclose(conv(mr.tensor(x)).data,
                               ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    lin = nn.Linear(7, 5)
    ref = torch.nn.Linear(7, 5)
    ref.load_state_dict({k: torch.from_numpy(v.numpy()) for k, v in lin.state_dict().items()})
    np.testing.assert_allclose(lin(mr.tensor(x)).data,
                               ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    # our state_dict keys are torch's
    assert list(nn.Conv2d(3, 4, 3).state_dict()) == list(torch.nn.Conv2d(3, 4, 3).state_dict())


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_batchnorm_matches_torch(dims):
    torch = _torch()
    shape = {2: (8, 3), 3: (4, 3, 5), 4: (4, 3, 5, 5)}[dims]
    ours = (nn.BatchNorm2d if dims == 4 else nn.BatchNorm1d)(3, momentum=0.3)
    ref = (torch.nn.BatchNorm2d if dims == 4 else torch.nn.BatchNorm1d)(3, momentum=0.3)
    assert list(ours.state_dict()) == list(ref.state_dict())
    rng = np.random.default_rng(1)
    ours.weight.data[...] = rng.standard_normal(3)
    ours.bias.data[...] = rng.standard_normal(3)
    ref.load_state_dict({k: torch.from_numpy(np.array(v.numpy()))
                         for k, v in ours.state_dict().items()})
    for _ in range(2):
        x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
        np.testing.assert_allclose(ours(mr.tensor(x)).data,
                                   ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-5)
    ours.eval()
    ref.eval()
    np.testing.assert_allclose(ours(mr.tensor(x)).data,
                               ref(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_pooling_modules_match_torch():
    torch = _torch()
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    pairs = [(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
             (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)),
             (nn.AdaptiveAvgPool2d((1, 1)), torch.nn.AdaptiveAvgPool2d((1, 1)))]
    for ours, ref in pairs:
        np.testing.assert_allclose(ours(mr.tensor(x)).data,
                                   ref(torch.from_numpy(x)).numpy(), atol=1e-6)
        assert repr(ours) == repr(ref)


def test_linear_with_zero_in_features_is_an_empty_layer_as_in_pytorch():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        lin = nn.Linear(0, 3)
    assert lin.weight.shape == (3, 0) and lin.bias.tolist() == [0.0, 0.0, 0.0]
    out = lin(mr.zeros(2, 0))
    assert out.shape == (2, 3) and out.tolist() == [[0.0] * 3] * 2
    out.sum().backward()
    assert lin.bias.grad.tolist() == [2.0, 2.0, 2.0] and lin.weight.grad.shape == (3, 0)
    with pytest.warns(UserWarning, match="no-op"):
        assert nn.Linear(3, 0)(mr.randn(2, 3)).shape == (2, 0)
