"""The channel-major fast path (minires.ops.channel_major, fast_conv, fused_norm):
equal to PyTorch and to the plain NCHW path, invisible to the user, and safe with
everything that keeps a graph alive (shared layers, retain_graph, two forwards before
one backward)."""

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import models, nn
from minires.inspect import GradientMonitor
from minires.ops import channel_major as cm
from minires.ops import fast_conv, fused_norm
from minires.optim import SGD


@pytest.fixture
def plain_and_fast():
    """Run a function with the fast path off, then on; restores the switch."""
    def run(fn):
        results = []
        try:
            for fast in (False, True):
                cm.use_fast_path(fast)
                mr.manual_seed(0)
                results.append(fn())
        finally:
            cm.use_fast_path(True)
        return results
    return run


def assert_close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ parity with PyTorch

torch_cases = [  # x shape, w shape, stride, padding, bias
    ((3, 4, 9, 8), (5, 4, 3, 3), 1, 1, True),
    ((3, 4, 9, 8), (5, 4, 3, 3), 2, 1, False),
    ((2, 6, 8, 8), (4, 6, 1, 1), 2, 0, True),
    ((2, 3, 6, 7), (2, 3, 1, 1), 1, 0, False),
]


@pytest.mark.parametrize("xs, ws, stride, padding, bias", torch_cases)
def test_fast_conv2d_matches_torch(xs, ws, stride, padding, bias, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    arrays += [rng.standard_normal(ws[0])] if bias else []
    ours = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fast_conv.conv2d(*ours, stride=stride, padding=padding)
    yt = torch.nn.functional.conv2d(*theirs, stride=stride, padding=padding)
    gy = rng.standard_normal(yt.shape)
    y.backward(mr.tensor(gy, device=device))
    yt.backward(torch.tensor(gy))
    assert_close(y.detach().cpu().numpy(), yt.detach().numpy(), 1e-9, 1e-10)
    for a, b in zip(ours, theirs):
        assert_close(a.grad.cpu().numpy(), b.grad.numpy(), 1e-9, 1e-10)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("residual", [False, True])
def test_batch_norm_act_matches_torch(training, residual, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(3), rng.standard_normal(3)]
    arrays += [rng.standard_normal((4, 3, 5, 5))] if residual else []
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    ours = [mr.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours_stats = [mr.tensor(rm, device=device), mr.tensor(rv, device=device)]
    torch_stats = [torch.tensor(rm), torch.tensor(rv)]
    y = fused_norm.batch_norm_act(ours[0], *ours_stats, ours[1], ours[2], training, 0.2, 1e-3,
                                  residual=ours[3] if residual else None)
    z = torch.nn.functional.batch_norm(theirs[0], *torch_stats, theirs[1], theirs[2], training,
                                       0.2, 1e-3)
    yt = torch.relu(z + theirs[3] if residual else z)
    gy = rng.standard_normal(yt.shape)
    y.backward(mr.tensor(gy, device=device))
    yt.backward(torch.tensor(gy))
    assert_close(y.detach().cpu().numpy(), yt.detach().numpy(), 1e-9, 1e-10)
    for a, b in zip(ours, theirs):
        assert_close(a.grad.cpu().numpy(), b.grad.numpy(), 1e-9, 1e-10)
    for a, b in zip(ours_stats, torch_stats):
        assert_close(a.cpu().numpy(), b.numpy(), 1e-12)


# ------------------------------------------------------------------ the layout is invisible


def train_step(model, x, y):
    loss = F.cross_entropy(model(mr.tensor(x)), mr.tensor(y))
    loss.backward()
    return loss


def batch(n=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, size, size)), rng.integers(0, 10, n)


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_model_outputs_gradients_and_state_are_those_of_the_plain_path(name, plain_and_fast):
    x, y = batch()

    def run():
        model = models.get_model(name, num_classes=10).double()
        out = model(mr.tensor(x))
        F.cross_entropy(out, mr.tensor(y)).backward()
        model.eval()
        evaluated = model(mr.tensor(x)).detach().numpy()
        return (out, {k: p.grad.numpy() for k, p in model.named_parameters()},
                {k: v.numpy().copy() for k, v in model.state_dict().items()}, evaluated)

    (out_p, grads_p, state_p, eval_p), (out_f, grads_f, state_f, eval_f) = run_fast = \
        plain_and_fast(run)
    assert out_f.shape == out_p.shape == (4, 10)
    assert_close(out_f.detach().numpy(), out_p.detach().numpy())
    assert_close(eval_f, eval_p)
    assert grads_f.keys() == grads_p.keys() and state_f.keys() == state_p.keys()
    for k in grads_p:
        assert grads_f[k].shape == grads_p[k].shape
        assert_close(grads_f[k], grads_p[k], 1e-9, 1e-12)
    for k in state_p:
        assert state_f[k].shape == state_p[k].shape and state_f[k].dtype == state_p[k].dtype
        assert_close(state_f[k], state_p[k], 1e-10)
    assert len(run_fast) == 2


def test_hooks_see_nchw_tensors_equal_to_the_plain_path(plain_and_fast):
    x, _ = batch()

    def run():
        model = models.resnet20().double()
        seen = {}

        def record(name):
            def hook(module, args, out):
                seen[name] = (args[0].shape, out.shape, out.detach().numpy().copy())
            return hook

        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, models.BasicBlock)):
                m.register_forward_hook(record(name))
        model(mr.tensor(x))
        return seen

    plain, fast = plain_and_fast(run)
    assert plain.keys() == fast.keys() and len(plain) == 19 + 9
    for name in plain:
        assert fast[name][:2] == plain[name][:2]
        assert len(fast[name][1]) == 4 and fast[name][1][0] == 4  # (N, C, H, W)
        assert_close(fast[name][2], plain[name][2])


def test_gradient_monitor_reports_the_same_flow_on_both_paths(plain_and_fast):
    x, y = batch()

    def run():
        model = models.resnet20().double()
        optimizer = SGD(model.parameters(), lr=0.1)
        with GradientMonitor(model, optimizer) as monitor:
            for _ in range(2):
                optimizer.zero_grad()
                train_step(model, x, y)
                optimizer.step()
        return monitor.history

    plain, fast = plain_and_fast(run)
    for stat in ("act_grad_norm", "act_mean", "act_std", "dead_relu", "weight_grad_norm",
                 "update_ratio"):
        assert_close(fast[stat], plain[stat], 1e-8)


def test_a_hook_on_a_blocks_relu_turns_fusion_off_and_still_fires():
    model = models.resnet20().double()
    calls = []
    model.layer1[0].relu.register_forward_hook(lambda m, a, out: calls.append(out.shape))
    model(mr.tensor(batch()[0]))
    assert calls == [(4, 16, 16, 16)] * 2  # the block's ReLU runs twice, unfused


def test_fast_path_output_is_a_grid_view_and_the_switch_turns_it_off():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    x = mr.tensor(batch()[0])
    assert cm.find_grid(conv(x).data) is not None
    cm.use_fast_path(False)
    try:
        assert cm.find_grid(conv(x).data) is None
    finally:
        cm.use_fast_path(True)


def test_views_and_copies_of_a_grid_view_are_not_taken_for_grids():
    y = nn.Conv2d(2, 3, 3, padding=1).double()(mr.tensor(np.ones((2, 2, 5, 4))))
    assert cm.find_grid(y.data) is not None
    assert cm.find_grid(y.data[:, 1:]) is None  # fewer channels, same base
    assert cm.find_grid(y.data[:1]) is None  # fewer images
    assert cm.find_grid(y.data[..., ::-1]) is None  # other strides
    assert cm.find_grid(y.data.copy()) is None
    assert cm.find_grid(y.data.reshape(2, 3, 20)) is None


def test_writing_into_a_grid_view_reaches_the_next_fast_op():
    conv = nn.Conv2d(3, 3, 3, padding=1, bias=False).double()
    y = conv(mr.tensor(batch()[0][:, :, :5, :5]))
    y.data[:, :, 1:3] = 2.0  # a user writes pixels through the view; the zeros stay zero
    G, grid = cm.find_grid(y.data)
    assert_close(cm.zero_pads(G.copy(), grid), G)
    z = F.relu(y)
    with mr.no_grad():
        fast = nn.Conv2d(3, 2, 3, padding=1).double()
        expected = F.conv2d(mr.tensor(np.ascontiguousarray(y.data)), fast.weight, fast.bias,
                            padding=1)
        assert_close(fast(y).numpy(), expected.numpy())
        relu_plain = F.relu(mr.tensor(np.ascontiguousarray(y.data)))
        assert_close(fast(z.detach()).numpy(),
                     F.conv2d(relu_plain, fast.weight, fast.bias, padding=1).numpy())


# ------------------------------------------------------------------ buffers and saved arrays


def test_convolution_saves_its_input_grid_and_weight_only():
    x = mr.tensor(np.ones((2, 3, 8, 8)), requires_grad=True)
    a = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    h = a(x)
    G, grid = cm.find_grid(h.data)
    y = nn.Conv2d(4, 5, 3, padding=1, bias=False).double()(h)
    saved_grid, saved_w = y.grad_fn.saved_tensors
    # the layer before's output itself (or a read-only view of it): no copy, no im2col
    assert saved_grid is G or saved_grid.base is G
    assert saved_w.shape == (5, 4, 3, 3)


def test_fused_batch_norm_saves_xhat_and_its_output_only():
    x = nn.Conv2d(3, 4, 3, padding=1).double()(mr.tensor(np.ones((2, 3, 5, 5)) +
                                                         np.arange(5.0)))
    bn = nn.BatchNorm2d(4).double()
    y = bn.forward_relu(x)
    xhat, out, scale = y.grad_fn.saved_tensors
    G = cm.find_grid(y.data)[0]
    assert out is G or out.base is G  # the output is the ReLU mask: no separate mask
    assert xhat.shape == out.shape and scale.shape == (4,)
    z = bn(x)  # BatchNorm alone on a grid: no ReLU, nothing but x-hat kept
    assert z.grad_fn.saved_tensors[1] is None


def test_outputs_never_share_memory_with_the_workspace_or_each_other():
    x = mr.tensor(batch()[0])
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    y1 = conv(x)
    before = y1.data.copy()
    y2 = conv(mr.tensor(batch(seed=1)[0]))  # the same layer again: the workspace is reused
    assert_close(y1.data, before, 0, 0)
    assert not np.shares_memory(y1.data, y2.data)
    workspace = cm.workspace(np, (1,), y2.dtype).base  # the buffer the layer used
    assert workspace.size >= 3 * 9 * 4  # it held at least one tile's im2col columns
    assert not np.shares_memory(y2.data, workspace)


def compare_with_plain(plain_and_fast, build, step):
    """Build a model, run ``step`` (which calls backward), compare every gradient."""
    def run():
        model = build().double()
        step(model)
        return {k: p.grad.numpy().copy() for k, p in model.named_parameters()}

    plain, fast = plain_and_fast(run)
    for k in plain:
        assert_close(fast[k], plain[k], 1e-9, 1e-12)


def test_a_layer_applied_twice_before_backward(plain_and_fast):
    x, _ = batch()

    def step(conv):  # weight sharing: the same convolution twice in one graph
        (conv(F.relu(conv(mr.tensor(x[:, :3])))) ** 2).sum().backward()

    compare_with_plain(plain_and_fast, lambda: nn.Conv2d(3, 3, 3, padding=1), step)


def test_a_block_called_twice_and_two_batches_before_one_backward(plain_and_fast):
    x, y = batch()
    x2, y2 = batch(seed=1)

    def step(model):
        out = model.layer1[0](model.layer1[0](F.relu(model.bn1(model.conv1(mr.tensor(x))))))
        first = out.sum()
        loss = F.cross_entropy(model(mr.tensor(x2)), mr.tensor(y2))  # a second forward
        (first * 1e-3 + loss).backward()

    compare_with_plain(plain_and_fast, models.resnet20, step)


def test_retain_graph_and_a_second_backward(plain_and_fast):
    x, y = batch()

    def step(model):
        loss = F.cross_entropy(model(mr.tensor(x)), mr.tensor(y))
        loss.backward(retain_graph=True)
        model(mr.tensor(x))  # a forward in between reuses every workspace
        loss.backward()

    compare_with_plain(plain_and_fast, models.resnet20, step)


def test_recomputing_a_segment_like_gradient_checkpointing(plain_and_fast):
    x, y = batch()

    def step(model):
        stem = F.relu(model.bn1(model.conv1(mr.tensor(x))))
        with mr.no_grad():  # the segment runs once without a graph ...
            model.layer1(stem)
        out = model.layer1(stem)  # ... and again with one, as checkpointing does
        for stage in (model.layer2, model.layer3):
            out = stage(out)
        logits = model.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        F.cross_entropy(logits, mr.tensor(y)).backward()

    compare_with_plain(plain_and_fast, models.resnet20, step)


def test_float32_matmul_precision_reaches_the_fast_path(plain_and_fast):
    x = batch()[0].astype(np.float32)

    def run():
        conv = nn.Conv2d(3, 8, 3, padding=1)
        mr.set_float32_matmul_precision("medium")
        try:
            return conv(mr.tensor(x)).detach().numpy()
        finally:
            mr.set_float32_matmul_precision("highest")

    plain, fast = plain_and_fast(run)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)
    with mr.no_grad():
        mr.manual_seed(0)
        exact = nn.Conv2d(3, 8, 3, padding=1)(mr.tensor(x)).numpy()
    assert np.abs(fast - exact).max() > 10 * np.abs(fast - plain).max()


def test_fast_conv2d_rejects_what_it_has_no_path_for():
    x, w = mr.randn(1, 2, 5, 5), mr.randn(3, 2, 5, 5)
    with pytest.raises(ValueError, match="fast_conv.conv2d: no fast path"):
        fast_conv.conv2d(x, w, padding=2)
    with pytest.raises(ValueError, match="conv2d: input of shape"):
        fast_conv.conv2d(mr.randn(1, 3, 5, 5), w, padding=1)
    with pytest.raises(ValueError, match="batch_norm_act: residual of shape"):
        fused_norm.batch_norm_act(x, None, None, training=True, residual=mr.randn(1, 2, 5, 4))

    class Elsewhere(mr.Tensor):  # a running statistic that claims to live on another device
        device = "cuda"

    with pytest.raises(RuntimeError, match="BatchNormAct: expected all tensors to be on the"):
        fused_norm.batch_norm_act(x, Elsewhere(np.zeros(2, np.float32)), mr.ones(2),
                                  training=True)


def test_a_read_only_view_of_a_grid_view_is_recognised_and_stays_read_only():
    y = nn.Conv2d(2, 3, 3, padding=1).double()(mr.tensor(np.ones((2, 2, 5, 4))))
    view = y.data.view()
    view.flags.writeable = False
    G, grid = cm.find_grid(view)
    assert G.base is cm.find_grid(y.data)[0] and not G.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        G[0, 0] = 1.0
