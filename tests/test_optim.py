"""Optimizers, LR schedulers and clip_grad_norm_: hand-computed steps, then PyTorch parity.

The hand-computed cases use a 2-element parameter p0 = [1, -2] and the gradients
G = [0.5, 1.0], [0.1, -0.2], [-0.3, 0.4]; the expected numbers are worked out in the
comments (or, for Adam, with the formula in adam.py evaluated by hand in plain Python).
"""

import math
import warnings

import numpy as np
import pytest

import minires as mr
from minires import backend
from minires.nn import Parameter
from minires.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from minires.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
)
from minires.serialization import load, save

P0 = [1.0, -2.0]
G = [[0.5, 1.0], [0.1, -0.2], [-0.3, 0.4]]


def param(values, device="cpu", dtype=np.float64):
    return Parameter(backend.to_device(np.array(values, dtype=dtype), device))


def set_grad(p, values):
    xp = backend.array_module(p.data)
    p.grad = mr.Tensor(xp.asarray(np.asarray(values, dtype=p.dtype)))


def run_steps(make_optimizer, device, n=3):
    """Positions of p after each of the first n steps with the gradients G."""
    p = param(P0, device)
    opt = make_optimizer([p])
    out = []
    for g in G[:n]:
        set_grad(p, g)
        opt.step()
        out.append(backend.to_numpy(p.data).copy())
    return np.array(out)


# --------------------------------------------------------------------------- SGD by hand


def test_sgd_plain_by_hand(device):
    # p <- p - 0.1 g: [1, -2] -> [0.95, -2.1] -> [0.94, -2.08] -> [0.97, -2.12]
    got = run_steps(lambda ps: SGD(ps, lr=0.1), device)
    np.testing.assert_allclose(got, [[0.95, -2.1], [0.94, -2.08], [0.97, -2.12]], rtol=1e-12)


def test_sgd_momentum_dampening_by_hand(device):
    # b1 = g1 = [0.5, 1]                (no dampening on the first step, as in PyTorch)
    # b2 = 0.9 b1 + 0.5 g2 = [0.5, 0.8]
    # b3 = 0.9 b2 + 0.5 g3 = [0.3, 0.92]
    # p: [0.95, -2.1] -> [0.9, -2.18] -> [0.87, -2.272]
    got = run_steps(lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.5), device)
    np.testing.assert_allclose(got, [[0.95, -2.1], [0.9, -2.18], [0.87, -2.272]], rtol=1e-12)


def test_sgd_nesterov_by_hand(device):
    # b1 = g1 = [0.5, 1];  step = g1 + 0.9 b1 = [0.95, 1.9]  -> p = [0.905, -2.19]
    # b2 = 0.9 b1 + g2 = [0.55, 0.7];  step = g2 + 0.9 b2 = [0.595, 0.43] -> [0.8455, -2.233]
    got = run_steps(lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True), device, n=2)
    np.testing.assert_allclose(got, [[0.905, -2.19], [0.8455, -2.233]], rtol=1e-12)


def test_sgd_weight_decay_by_hand(device):
    # g1 + 0.1 p0 = [0.6, 0.8] -> p1 = [0.94, -2.08]
    # g2 + 0.1 p1 = [0.194, -0.408] -> p2 = [0.9206, -2.0392]
    got = run_steps(lambda ps: SGD(ps, lr=0.1, weight_decay=0.1), device, n=2)
    np.testing.assert_allclose(got, [[0.94, -2.08], [0.9206, -2.0392]], rtol=1e-12)


def test_sgd_does_not_touch_grad_and_copies_first_buffer():
    p = param(P0)
    set_grad(p, G[0])
    grad = p.grad.data
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    opt.step()  # second step updates the buffer in place: it must not be the .grad array
    np.testing.assert_array_equal(grad, G[0])
    assert opt.state[p]["momentum_buffer"] is not grad


# --------------------------------------------------------------------------- Adam by hand


def test_adam_first_step_moves_each_coordinate_by_lr(device):
    # m_hat = g and v_hat = g^2 after one step, so the step is lr * sign(g) (up to eps)
    got = run_steps(lambda ps: Adam(ps, lr=0.1), device, n=1)
    np.testing.assert_allclose(got[0], [0.9, -2.1], rtol=1e-7)


def test_adam_by_hand(device):
    # t=2: m = [0.055, 0.07], v = [0.00025975, 0.001039], bias corrections 0.19, 0.001999
    got = run_steps(lambda ps: Adam(ps, lr=0.1), device)
    expected = [[0.900000002, -2.099999999], [0.8196959064, -2.151102606],
                [0.7986246118, -2.2112185998]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_adam_l2_weight_decay_by_hand(device):
    got = run_steps(lambda ps: Adam(ps, lr=0.1, weight_decay=0.1), device)
    expected = [[0.9000000017, -2.0999999987], [0.8136483454, -2.1256716601],
                [0.7715818211, -2.1581476971]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_adamw_by_hand(device):
    # step 1: p * (1 - 0.1 * 0.1) = [0.99, -1.98], then Adam's lr * sign(g): [0.89, -2.08]
    got = run_steps(lambda ps: AdamW(ps, lr=0.1, weight_decay=0.1), device)
    expected = [[0.890000002, -2.079999999], [0.8007959064, -2.110302606],
                [0.7717166527, -2.1493155738]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_adamw_default_weight_decay():
    assert AdamW([param(P0)]).defaults["weight_decay"] == 1e-2
    assert Adam([param(P0)]).defaults["weight_decay"] == 0.0


def test_float32_parameters_stay_float32(device):
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.1)):
        p = param(P0, device, np.float32)
        opt = make([p])
        for g in G:
            set_grad(p, g)
            opt.step()
        assert p.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state[p].values() if hasattr(v, "dtype"))


def test_state_follows_a_parameter_moved_after_some_steps(device):
    # model.to(device) / .double() swap p.data under an optimizer that already has state
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, lr=0.1)):
        p = param(P0, "cpu", np.float32)
        opt = make([p])
        set_grad(p, G[0])
        opt.step()
        p.data = backend.to_device(p.data.astype(np.float64), device)
        set_grad(p, G[1])
        opt.step()
        assert p.device == device and p.dtype == np.float64
        for value in opt.state[p].values():
            if hasattr(value, "dtype"):
                assert backend.device_of(value) == device and value.dtype == np.float64


# --------------------------------------------------------------------------- groups, zero_grad


def test_param_groups_with_different_lrs():
    a, b = param(P0), param([3.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01, "momentum": 0.5}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.5
    for _ in range(2):
        set_grad(a, [1.0, 1.0])
        set_grad(b, [2.0])
        opt.step()
    np.testing.assert_allclose(a.data, [0.8, -2.2])  # 2 plain steps of 0.1 * 1
    # b: buffer 2 then 0.5 * 2 + 2 = 3: 3 - 0.01 * 2 - 0.01 * 3 = 2.95
    np.testing.assert_allclose(b.data, [2.95])


def test_add_param_group_and_its_errors():
    a, b = param(P0), param([3.0])
    opt = SGD([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.5})  # a lone Tensor is accepted
    assert len(opt.param_groups[1]["params"]) == 1 and opt.param_groups[1]["params"][0] is b
    assert opt.param_groups[1]["momentum"] == 0  # filled from the defaults
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        SGD([{"params": [param([1.0])]}])
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="set"):
        SGD({param([1.0])}, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        SGD([np.zeros(2)], lr=0.1)
    leaf = param([1.0])
    with pytest.raises(ValueError, match="non-leaf"):
        SGD([leaf * 2], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        SGD(leaf, lr=0.1)
    with pytest.warns(UserWarning, match="more than once"):
        SGD([leaf, leaf], lr=0.1)


def test_invalid_hyperparameters_name_the_value():
    with pytest.raises(ValueError, match="lr=-1"):
        SGD([param(P0)], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        SGD([param(P0)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov.*dampening=0.5"):
        SGD([param(P0)], lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 1: 1.0"):
        Adam([param(P0)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="AdamW: invalid eps"):
        AdamW([param(P0)], eps=-1)


def test_zero_grad():
    a, b = param(P0), param([3.0])
    shared = np.array([1.0, 2.0])
    a.grad = mr.Tensor(shared)
    opt = SGD([a, b], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, [0.0, 0.0])
    assert b.grad is None
    np.testing.assert_array_equal(shared, [1.0, 2.0])  # a shared array is never zeroed
    opt.zero_grad()
    assert a.grad is None


def test_params_without_grad_are_skipped():
    a, b = param(P0), param([3.0])
    opt = Adam([a, b], lr=0.1)
    set_grad(a, G[0])
    opt.step()
    np.testing.assert_array_equal(b.data, [3.0])
    assert b not in opt.state and opt.state[a]["step"] == 1


def test_step_runs_the_closure_with_grad_enabled():
    p = param(P0)
    opt = SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()  # d/dp = 2p = [2, -4]
        loss.backward()
        return loss

    with mr.no_grad():
        loss = opt.step(closure)
    assert float(loss) == pytest.approx(5.0)
    np.testing.assert_allclose(p.data, [0.8, -1.6])


def test_step_records_no_graph():
    p = param(P0)
    set_grad(p, G[0])
    opt = Adam([p], lr=0.1)
    opt.step()
    assert p.grad_fn is None and p.is_leaf and p.requires_grad


# --------------------------------------------------------------------------- state_dict


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(s).astype(dtype)) for s in [(3, 4), (5,), (2,)]]


def make_grads(n_steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in [(3, 4), (5,), (2,)]] for _ in range(n_steps)]


def grouped(params, opt_class, **kw):
    """Two groups: the third parameter trains with a different lr."""
    return opt_class([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], **kw)


OPTIMIZERS = {
    "sgd_momentum": (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    "sgd_nesterov": (SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": (Adam, dict(lr=0.01, weight_decay=1e-2)),
    "adamw": (AdamW, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    "adam_amsgrad": (Adam, dict(lr=0.01, weight_decay=1e-2, amsgrad=True)),
    "adamw_amsgrad": (AdamW, dict(lr=0.02, betas=(0.5, 0.9), amsgrad=True)),
}


def apply_steps(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = mr.Tensor(g.astype(p.dtype))
        opt.step()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_state_dict_round_trip_through_a_file(name, tmp_path):
    opt_class, kw = OPTIMIZERS[name]
    grads = make_grads(10)
    straight = make_params()
    opt = grouped(straight, opt_class, **kw)
    apply_steps(opt, straight, grads)

    first = make_params()
    opt = grouped(first, opt_class, **kw)
    apply_steps(opt, first, grads[:5])
    save({"params": [p.data for p in first], "optimizer": opt.state_dict()}, tmp_path / "c")

    checkpoint = load(tmp_path / "c")
    resumed = [Parameter(a) for a in checkpoint["params"]]
    opt2 = grouped(resumed, opt_class, lr=123.0)  # settings come from the state dict
    opt2.load_state_dict(checkpoint["optimizer"])
    assert opt2.param_groups[0]["lr"] == kw["lr"] and opt2.param_groups[1]["lr"] == 0.05
    apply_steps(opt2, resumed, grads[5:])
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_state_dict_shape_matches_pytorch():
    params = make_params()
    opt = grouped(params, SGD, lr=0.1, momentum=0.9)
    apply_steps(opt, params, make_grads(1))
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 1, 2]
    assert set(sd["state"][0]) == {"momentum_buffer"}
    assert sd["param_groups"][1]["lr"] == 0.05


def test_state_dict_is_a_snapshot():
    params = make_params()
    opt = Adam(params, lr=0.1)
    grads = make_grads(2)
    apply_steps(opt, params, grads[:1])
    sd = opt.state_dict()
    before = sd["state"][0]["exp_avg"].copy()
    apply_steps(opt, params, grads[1:])
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], before)
    assert sd["state"][0]["step"] == 1


def test_load_state_dict_copies_and_casts():
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    apply_steps(opt, params, make_grads(1))
    sd = opt.state_dict()
    params32 = make_params(dtype=np.float32)
    opt32 = SGD(params32, lr=0.1, momentum=0.9)
    opt32.load_state_dict(sd)
    buf = opt32.state[params32[0]]["momentum_buffer"]
    assert buf.dtype == np.float32
    buf[...] = 0
    assert np.all(sd["state"][0]["momentum_buffer"] != 0)


def test_load_state_dict_errors():
    params = make_params()
    opt = grouped(params, SGD, lr=0.1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter groups, but the optimizer has 1"):
        SGD(make_params(), lr=0.1).load_state_dict(sd)
    other = make_params()
    with pytest.raises(ValueError, match="group 0 has 2 parameters, but the optimizer's group "
                                         "0 has 1"):
        SGD([{"params": other[:1]}, {"params": other[1:]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="no 'state' key"):
        opt.load_state_dict({"param_groups": []})
    sd = {"state": {0: {"momentum_buffer": np.zeros(7)}}, "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match=r"shape \(7,\), but the parameter has shape \(3, 4\)"):
        opt.load_state_dict(sd)


def test_optimizer_repr_lists_groups():
    text = repr(grouped(make_params(), SGD, lr=0.1))
    assert "Parameter Group 1" in text and "lr: 0.05" in text


# --------------------------------------------------------------------------- PyTorch parity


def torch_twin(torch, params, opt_name):
    opt_class, kw = OPTIMIZERS[opt_name]
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    t_class = getattr(torch.optim, opt_class.__name__)
    topt = t_class([{"params": tparams[:2]}, {"params": tparams[2:], "lr": 0.05}], **kw)
    return tparams, topt


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_match_torch(name):
    torch = pytest.importorskip("torch")
    opt_class, kw = OPTIMIZERS[name]
    params = make_params()
    opt = grouped(params, opt_class, **kw)
    tparams, topt = torch_twin(torch, params, name)
    for step, step_grads in enumerate(make_grads(20)):
        for i, (p, tp, g) in enumerate(zip(params, tparams, step_grads)):
            if i == 2 and step % 3 == 1:  # sometimes no gradient: both must skip it
                p.grad, tp.grad = None, None
            else:
                p.grad, tp.grad = mr.Tensor(g.copy()), torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- clip_grad_norm_


def grads_of(*arrays):
    params = [param(np.zeros_like(a, dtype=float)) for a in arrays]
    for p, a in zip(params, arrays):
        set_grad(p, a)
    return params


def test_clip_grad_norm_by_hand(device):
    params = grads_of([3.0, 4.0], [12.0])
    for p in params:
        p.data, p.grad.data = backend.to_device(p.data, device), backend.to_device(
            p.grad.data, device)
    total = clip_grad_norm_(params, max_norm=6.5)  # ||(3, 4, 12)|| = 13
    assert isinstance(total, mr.Tensor) and total.device == device
    assert float(total) == pytest.approx(13.0)
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(backend.to_numpy(params[0].grad.data), [3 * coef, 4 * coef])
    np.testing.assert_allclose(backend.to_numpy(params[1].grad.data), [12 * coef])


def test_clip_grad_norm_other_norms_and_no_clip():
    params = grads_of([3.0, -4.0], [12.0])
    assert float(clip_grad_norm_(params, 100.0, norm_type=1)) == pytest.approx(19.0)
    np.testing.assert_array_equal(params[0].grad.data, [3.0, -4.0])  # under max: untouched
    total = clip_grad_norm_(params, 6.0, norm_type=float("inf"))
    assert float(total) == pytest.approx(12.0)
    np.testing.assert_allclose(params[1].grad.data, [12 * 6 / (12 + 1e-6)])
    one = grads_of([5.0])[0]
    assert float(clip_grad_norm_(one, 1.0)) == pytest.approx(5.0)  # a lone Tensor works
    np.testing.assert_allclose(one.grad.data, [5 / (5 + 1e-6)])


def test_clip_grad_norm_scales_a_shared_gradient_array_once():
    a, b = param([0.0, 0.0]), param([0.0, 0.0])
    shared = np.array([3.0, 4.0])
    a.grad, b.grad = mr.Tensor(shared), mr.Tensor(shared)  # as y = a + b can produce
    clip_grad_norm_([a, b], max_norm=1.0)  # total = sqrt(50)
    coef = 1.0 / (math.sqrt(50) + 1e-6)
    np.testing.assert_allclose(a.grad.data, [3 * coef, 4 * coef])
    np.testing.assert_allclose(b.grad.data, [3 * coef, 4 * coef])


def test_clip_grad_norm_edge_cases():
    assert float(clip_grad_norm_([param([1.0])], 1.0)) == 0.0  # no gradients at all
    params = grads_of([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite|is inf"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    g32 = grads_of(np.array([3.0, 4.0], dtype=np.float32))[0]
    g32.grad = mr.Tensor(np.array([3.0, 4.0], dtype=np.float32))
    clip_grad_norm_([g32], 1.0)
    assert g32.grad.dtype == np.float32


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    grads = make_grads(1, seed=norm_type == 3.0)[0]
    params = grads_of(*grads)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    total = clip_grad_norm_(params, 1.5, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.5, norm_type=norm_type)
    assert float(total) == pytest.approx(float(ttotal), rel=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- schedulers by hand


def lrs_over(make_scheduler, steps, lr=1.0, optimizer=None):
    """The lr of group 0 at steps 0..steps-1 (step 0: right after construction)."""
    opt = optimizer or SGD([param(P0)], lr=lr, momentum=0.9)
    scheduler = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        assert scheduler.get_last_lr()[0] == opt.param_groups[0]["lr"]
        opt.step()
        scheduler.step()
    return out


def test_step_lr_by_hand():
    got = lrs_over(lambda o: StepLR(o, step_size=2, gamma=0.5), 6)
    np.testing.assert_allclose(got, [1, 1, 0.5, 0.5, 0.25, 0.25], rtol=1e-12)


def test_multistep_lr_by_hand():
    got = lrs_over(lambda o: MultiStepLR(o, milestones=[3, 1], gamma=0.1), 5)
    np.testing.assert_allclose(got, [1, 0.1, 0.1, 0.01, 0.01], rtol=1e-12)
    got = lrs_over(lambda o: MultiStepLR(o, milestones=[2, 2], gamma=0.1), 3)
    np.testing.assert_allclose(got, [1, 1, 0.01], rtol=1e-12)  # a repeated milestone counts twice


def test_cosine_annealing_lr_by_hand():
    # (1 + cos(pi k / 4)) / 2 for k = 0..5, climbing back up after T_max
    got = lrs_over(lambda o: CosineAnnealingLR(o, T_max=4), 6)
    np.testing.assert_allclose(got, [1, 0.8535533906, 0.5, 0.1464466094, 0, 0.1464466094],
                               rtol=1e-9, atol=1e-15)
    got = lrs_over(lambda o: CosineAnnealingLR(o, T_max=2, eta_min=0.1), 3)
    np.testing.assert_allclose(got, [1, 0.55, 0.1], rtol=1e-12)


def test_linear_lr_by_hand():
    got = lrs_over(lambda o: LinearLR(o, start_factor=0.25, total_iters=3), 5, lr=2.0)
    np.testing.assert_allclose(got, [0.5, 1.0, 1.5, 2.0, 2.0], rtol=1e-12)


def test_one_cycle_lr_by_hand():
    # initial = 1 / 25 = 0.04, min = 0.04 / 1e4; peak at step 0.3 * 10 - 1 = 2, end at 9
    opt = SGD([param(P0)], lr=123.0)  # momentum=0: cycling switches it on, as in PyTorch
    scheduler = OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="linear")
    lrs, momenta = [], []
    for step in range(10):
        if step > 0:
            scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
    np.testing.assert_allclose(lrs, [0.04, 0.52, 1.0, 0.8571434286, 0.7142868571,
                                     0.5714302857, 0.4285737143, 0.2857171429, 0.1428605714,
                                     4e-6], rtol=1e-9)
    np.testing.assert_allclose(momenta[:3], [0.95, 0.9, 0.85], rtol=1e-12)
    np.testing.assert_allclose(momenta[-1], 0.95, rtol=1e-12)
    scheduler.step()  # step 10 == total_steps is still allowed...
    with pytest.raises(ValueError, match="tried to step 11 times.*total steps is 10"):
        scheduler.step()


def test_one_cycle_lr_cycles_adam_beta1_and_checks_arguments():
    opt = Adam([param(P0)], lr=1.0, betas=(0.9, 0.99))
    OneCycleLR(opt, max_lr=0.1, epochs=2, steps_per_epoch=5)
    assert opt.param_groups[0]["betas"] == (0.95, 0.99)
    with pytest.raises(ValueError, match="total_steps OR"):
        OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="exp")

    class Plain(Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

    with pytest.raises(ValueError, match="must support momentum or beta1"):
        OneCycleLR(Plain([param(P0)]), max_lr=0.1, total_steps=5)


def test_sequential_lr_by_hand():
    def make(o):
        warmup = LinearLR(o, start_factor=0.5, total_iters=2)
        decay = StepLR(o, step_size=2, gamma=0.1)
        return SequentialLR(o, [warmup, decay], milestones=[3])

    # warm-up 0.5, 0.75, 1.0; at step 3 StepLR restarts from its own step 0
    got = lrs_over(make, 8)
    np.testing.assert_allclose(got, [0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01], rtol=1e-12)


def test_sequential_lr_restarts_a_repeated_scheduler_at_each_of_its_milestones():
    def make(o):
        warmup = LinearLR(o, start_factor=0.5, total_iters=2)
        return SequentialLR(o, [warmup, StepLR(o, step_size=1, gamma=0.1), warmup],
                            milestones=[2, 4])

    got = lrs_over(make, 7)
    np.testing.assert_allclose(got, [0.5, 0.75, 1.0, 0.1, 0.5, 0.75, 1.0], rtol=1e-12)


def test_sequential_lr_checks_arguments():
    opt = SGD([param(P0)], lr=1.0)
    s1, s2 = StepLR(opt, 2), StepLR(opt, 3)
    with pytest.raises(ValueError, match="number of schedulers 2 and the number of milestones 2"):
        SequentialLR(opt, [s1, s2], milestones=[1, 2])
    other = SGD([param(P0)], lr=1.0)
    with pytest.raises(ValueError, match="same optimizer"):
        SequentialLR(other, [s1, s2], milestones=[2])


def test_scheduler_param_groups_keep_their_own_base_lr():
    a, b = param(P0), param([1.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=1.0)
    scheduler = StepLR(opt, step_size=1, gamma=0.5)
    scheduler.step()
    assert scheduler.get_last_lr() == [0.5, 0.05]
    assert scheduler.base_lrs == [1.0, 0.1]


# --------------------------------------------------------------------------- schedulers vs torch

SCHEDULERS = {
    "step": lambda m, o: m.StepLR(o, step_size=3, gamma=0.7),
    "multistep": lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 11], gamma=0.5),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=6),
    "onecycle": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=25),
    "onecycle_3phase_linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.3, epochs=5, steps_per_epoch=5, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10.0, final_div_factor=100.0),
    "sequential": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.2, total_iters=4), m.CosineAnnealingLR(o, T_max=8),
            m.StepLR(o, step_size=2)], milestones=[4, 12]),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.85),
    "constant": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=6),
    "polynomial": lambda m, o: m.PolynomialLR(o, total_iters=15, power=2.0),
    "lambda": lambda m, o: m.LambdaLR(o, lambda step: 1 / (1 + 0.3 * step)),
    "lambda_per_group": lambda m, o: m.LambdaLR(o, [lambda s: 0.9 ** s, lambda s: s % 4 + 1]),
    "warm_restarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2,
                                                                eta_min=0.001),
    "warm_restarts_t_mult_1": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=4),
    "chained_constant_exponential": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.1, total_iters=10), m.ExponentialLR(o, gamma=0.9)]),
    "chained_linear_cosine": lambda m, o: m.ChainedScheduler(
        [m.LinearLR(o, start_factor=0.2, total_iters=4),
         m.CosineAnnealingLR(o, T_max=6, eta_min=0.01)]),
    "chained_step_polynomial_lambda": lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, step_size=3, gamma=0.5), m.PolynomialLR(o, total_iters=10),
         m.LambdaLR(o, lambda s: 0.5 ** (s % 3)), m.MultiStepLR(o, [2, 5])]),
}


def _group_settings(group):
    return {k: group[k] for k in ("lr", "momentum", "betas") if k in group}


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("name", SCHEDULERS)
def test_schedulers_match_torch(name, opt_name):
    torch = pytest.importorskip("torch")
    from minires.optim import lr_scheduler

    params = make_params()
    opt_class, kw = OPTIMIZERS[opt_name]
    opt = grouped(params, opt_class, **kw)
    tparams, topt = torch_twin(torch, params, opt_name)
    scheduler = SCHEDULERS[name](lr_scheduler, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. torch's "lr_scheduler.step() before ..."
        tscheduler = SCHEDULERS[name](torch.optim.lr_scheduler, topt)
        for _ in range(25):
            np.testing.assert_allclose(scheduler.get_last_lr(), tscheduler.get_last_lr(),
                                       rtol=1e-12, atol=1e-15)
            for group, tgroup in zip(opt.param_groups, topt.param_groups):
                ours, theirs = _group_settings(group), _group_settings(tgroup)
                assert ours.keys() == theirs.keys()
                for key in ours:
                    np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-12, atol=1e-15)
            topt.step()
            scheduler.step()
            tscheduler.step()


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_state_dict_round_trip(name, tmp_path):
    from minires.optim import lr_scheduler

    def build():
        opt = grouped(make_params(), SGD, lr=0.1, momentum=0.9)
        return opt, SCHEDULERS[name](lr_scheduler, opt)

    opt, scheduler = build()
    straight = []
    for _ in range(20):
        scheduler.step()
        straight.append((scheduler.get_last_lr(), opt.param_groups[0]["momentum"]))

    opt, scheduler = build()
    resumed = []
    for _ in range(8):
        scheduler.step()
        resumed.append((scheduler.get_last_lr(), opt.param_groups[0]["momentum"]))
    save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "c")
    checkpoint = load(tmp_path / "c")
    opt, scheduler = build()
    opt.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    for _ in range(12):
        scheduler.step()
        resumed.append((scheduler.get_last_lr(), opt.param_groups[0]["momentum"]))
    assert resumed == straight


# --------------------------------------------------------------------------- ReduceLROnPlateau

PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.86, 0.9, 0.9, 0.9, 0.9,
                   0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7, 0.9, 0.9, 0.9, 0.9]
PLATEAUS = {
    "min_rel": dict(patience=2, cooldown=1, factor=0.5, min_lr=0.004),
    "max_abs": dict(mode="max", threshold_mode="abs", threshold=0.01, patience=1,
                    min_lr=[0.01, 0.001]),
    "defaults": dict(),
}


@pytest.mark.parametrize("name", PLATEAUS)
def test_reduce_lr_on_plateau_matches_torch(name):
    torch = pytest.importorskip("torch")
    from minires.optim.lr_scheduler import ReduceLROnPlateau

    params = make_params()
    opt = grouped(params, SGD, lr=0.1)
    _, topt = torch_twin(torch, params, "sgd_momentum")
    scheduler = ReduceLROnPlateau(opt, **PLATEAUS[name])
    tscheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **PLATEAUS[name])
    metrics = PLATEAU_METRICS if name != "max_abs" else [-m for m in PLATEAU_METRICS]
    for metric in metrics * 2:
        scheduler.step(mr.tensor(metric))  # a 0-d tensor, as a loss would be
        tscheduler.step(metric)
        assert scheduler.get_last_lr() == tscheduler.get_last_lr()
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert scheduler.get_last_lr() != [0.1, 0.05]  # it did reduce


def test_reduce_lr_on_plateau_state_dict_round_trip(tmp_path):
    from minires.optim.lr_scheduler import ReduceLROnPlateau

    def build():
        opt = grouped(make_params(), SGD, lr=0.1)
        return opt, ReduceLROnPlateau(opt, patience=1, cooldown=2)

    opt, scheduler = build()
    for metric in PLATEAU_METRICS:
        scheduler.step(metric)
    straight = scheduler.get_last_lr()

    opt, scheduler = build()
    for metric in PLATEAU_METRICS[:9]:
        scheduler.step(metric)
    save({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()}, tmp_path / "c")
    checkpoint = load(tmp_path / "c")
    opt, scheduler = build()
    opt.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert scheduler.best == 0.8 and scheduler.mode_worse == math.inf
    for metric in PLATEAU_METRICS[9:]:
        scheduler.step(metric)
    assert scheduler.get_last_lr() == straight


def test_reduce_lr_on_plateau_checks_arguments():
    from minires.optim.lr_scheduler import ReduceLROnPlateau

    opt = grouped(make_params(), SGD, lr=0.1)
    for kw, message in [(dict(factor=1.0), "factor should be < 1.0"),
                        (dict(mode="lowest"), "mode must be 'min' or 'max'"),
                        (dict(threshold_mode="pct"), "threshold_mode"),
                        (dict(patience=-1), "non-negative integer patience"),
                        (dict(min_lr=[0.1]), "expected 2 min_lrs")]:
        with pytest.raises(ValueError, match=message):
            ReduceLROnPlateau(opt, **kw)


# --------------------------------------------------------------------------- LambdaLR, chains


class Warmup:
    """A callable object: its attributes go into LambdaLR's state_dict, as in PyTorch."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, step):
        return min(1.0, (step + 1) / self.steps)


def test_lambda_lr_state_dict_keeps_no_functions_but_callable_objects_attributes(tmp_path):
    from minires.optim.lr_scheduler import LambdaLR

    opt = grouped(make_params(), SGD, lr=0.1)
    scheduler = LambdaLR(opt, [lambda step: 0.5 ** step, Warmup(4)])
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [None, {"steps": 4}]
    save(state, tmp_path / "s")  # data only: it saves
    other = LambdaLR(grouped(make_params(), SGD, lr=0.1), [lambda step: 1.0, Warmup(9)])
    other.load_state_dict(load(tmp_path / "s"))
    assert other.lr_lambdas[1].steps == 4
    with pytest.raises(ValueError, match="expected 2 lr_lambdas"):
        LambdaLR(opt, [lambda step: 1.0])


def test_chained_scheduler_refuses_what_it_cannot_chain():
    from minires.optim.lr_scheduler import (
        ChainedScheduler,
        ExponentialLR,
        ReduceLROnPlateau,
    )

    opt = grouped(make_params(), SGD, lr=0.1)
    with pytest.raises(ValueError, match="cannot chain ReduceLROnPlateau"):
        ChainedScheduler([ExponentialLR(opt, 0.9), ReduceLROnPlateau(opt)])
    other = grouped(make_params(), SGD, lr=0.1)
    with pytest.raises(ValueError, match="same optimizer"):
        ChainedScheduler([ExponentialLR(opt, 0.9), ExponentialLR(other, 0.9)])
    with pytest.raises(ValueError, match="at least one scheduler"):
        ChainedScheduler([])


# --------------------------------------------------------------------------- foreign state dicts


def test_a_state_dict_of_another_optimizer_is_refused_naming_both():
    params = make_params()
    adam = Adam(params)
    apply_steps(adam, params, make_grads(1))
    with pytest.raises(ValueError, match=r"SGD\.load_state_dict: parameter group 0 of the "
                                         r"state dict has no \['dampening', 'momentum', "
                                         r"'nesterov'\] setting, which SGD needs; its settings "
                                         r".* are those of Adam or AdamW"):
        SGD(make_params(), lr=0.1, momentum=0.9).load_state_dict(adam.state_dict())
    sgd = SGD(params, lr=0.1, momentum=0.9)
    apply_steps(sgd, params, make_grads(1))
    with pytest.raises(ValueError, match=r"Adam\.load_state_dict: .*those of SGD"):
        Adam(make_params()).load_state_dict(sgd.state_dict())
    state = adam.state_dict()
    state["param_groups"][0].update(momentum=0.9, dampening=0, nesterov=False)
    with pytest.raises(ValueError, match=r"holds \['exp_avg', 'exp_avg_sq', 'step'\], which "
                                         r"SGD does not keep .* saved by Adam or AdamW"):
        SGD(make_params(), lr=0.1).load_state_dict(state)


def test_malformed_optimizer_state_dicts_get_clear_errors():
    opt = SGD(make_params(), lr=0.1)
    groups = opt.state_dict()["param_groups"]
    for bad, message in [
        ([1, 2], "expected a dict with 'state' and 'param_groups', got a list"),
        ({"state": [], "param_groups": groups}, r"state_dict\['state'\] must be a dict"),
        ({"state": {}, "param_groups": {"lr": 0.1}}, "must be a list of dicts, got a dict"),
        ({"state": {}, "param_groups": [{"lr": 0.1}]}, "must be a dict with a 'params' list"),
        ({"state": {0: 5}, "param_groups": groups}, "state of parameter 0 is of type int"),
    ]:
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(bad)


def test_an_adam_state_dict_saved_before_amsgrad_still_loads():
    params = make_params()
    opt = Adam(params)
    apply_steps(opt, params, make_grads(1))
    old = opt.state_dict()
    for group in old["param_groups"]:
        del group["amsgrad"]
    fresh = Adam(make_params(), amsgrad=True)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["amsgrad"] is False
