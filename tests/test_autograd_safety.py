"""Autograd safety, as in PyTorch: an array changed in place after forward saved it makes
backward raise (version counters), in-place updates of leaves work under no_grad(),
backward gets read-only views of gy and of the saved arrays, NumPy functions refuse
Tensors, and backward releases the activations."""


import numpy as np
import pytest

import minires as mr
import minires.nn as nn
import minires.nn.functional as F
from minires.autograd import Function
from minires.inspect import arrays_reachable_from
from minires.optim import SGD, Adam

# --------------------------------------------------------------------------- versions


def test_optimizer_step_between_forward_and_backward_raises_naming_the_op():
    mr.manual_seed(0)
    lin = nn.Linear(3, 2)
    loss = (lin(mr.randn(4, 3)) ** 2).sum()
    for p in lin.parameters():
        p.grad = mr.ones_like(p)
    v = lin.weight._version
    SGD(lin.parameters(), lr=0.1).step()  # changes the weight that matmul saved
    with pytest.raises(RuntimeError, match=rf"Matmul\.backward: one of the arrays needed for "
                                           rf"gradient computation has been modified by an "
                                           rf"in-place operation.*version {v + 1}; expected "
                                           rf"version {v} instead. Was optimizer.step\(\)"):
        loss.backward()


def test_every_optimizer_bumps_the_version_of_what_it_updates():
    for make in (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: Adam(ps, amsgrad=True),
                 lambda ps: mr.optim.AdamW(ps)):
        w = nn.Parameter(mr.randn(3))
        w.grad = mr.ones(3)
        before = w._version
        make([w]).step()
        assert w._version == before + 1


def test_in_place_change_of_a_saved_input_under_no_grad_fails_at_backward():
    x = mr.randn(3, requires_grad=True)
    w = mr.randn(3, requires_grad=True)
    y = (x * w).sum()  # Mul saves both inputs
    with mr.no_grad():
        w -= 1.0
    with pytest.raises(RuntimeError, match=r"Mul\.backward.*saved by MulBackward is at "
                                           r"version 1; expected version 0"):
        y.backward()


def test_in_place_change_of_a_saved_output_fails_at_backward():
    x = mr.randn(3, requires_grad=True)
    y = x.exp()  # Exp saves its output
    with mr.no_grad():
        y *= 2
    with pytest.raises(RuntimeError, match=r"Exp\.backward"):
        y.sum().backward()


def test_views_and_detach_share_the_version_counter():
    w = mr.randn(2, 3, requires_grad=True)
    view = w.reshape(3, 2)  # a numpy view of w's array
    assert view._version_counter is w._version_counter
    y = (view * 2.0).sum()  # Mul saves the view
    w.detach().add_(1.0)  # changes w's array through a detached alias
    assert w._version == 1 and view._version == 1
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_changing_an_array_nobody_saved_is_allowed():
    x = mr.randn(3, requires_grad=True)
    w = mr.randn(3, requires_grad=True)
    y = (x + w).sum()  # Add saves nothing
    with mr.no_grad():
        w += 1.0
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))


def test_module_load_state_dict_bumps_versions():
    lin = nn.Linear(2, 2)
    before = lin.weight._version
    lin.load_state_dict(nn.Linear(2, 2).state_dict())
    assert lin.weight._version == before + 1


# --------------------------------------------------------------------------- in place


def test_hand_written_sgd_under_no_grad_trains_the_same_leaf():
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.standard_normal((32, 3)))
    y = x @ mr.tensor([1.0, -2.0, 0.5], dtype=mr.float64)
    w = mr.zeros(3, dtype=mr.float64, requires_grad=True)
    losses = []
    for _ in range(50):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with mr.no_grad():
            w -= 0.1 * w.grad
            w.grad.zero_()
        losses.append(loss.item())
    assert w.is_leaf and w.requires_grad and w.grad_fn is None
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(w.detach().numpy(), [1.0, -2.0, 0.5], atol=1e-2)


def test_in_place_on_a_leaf_requiring_grad_raises_pytorchs_error():
    w = mr.randn(3, requires_grad=True)
    for update in (lambda: w.__isub__(1.0), lambda: w.add_(1.0), lambda: w.zero_(),
                   lambda: w.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being "
                                               "used in an in-place operation"):
            update()


def test_in_place_inside_the_graph_raises_instead_of_losing_the_gradient():
    x = mr.randn(3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"add_: minires does not record in-place"):
        y += 1
    total = mr.zeros(3)
    with pytest.raises(RuntimeError, match="does not record in-place"):
        total += y  # total would silently drop y's gradient


def test_in_place_methods_compute_like_pytorch():
    t = mr.tensor([1.0, 2.0, 3.0])
    t.add_(mr.tensor([1.0, 1.0, 1.0]), alpha=2)
    assert t.tolist() == [3.0, 4.0, 5.0]
    t.sub_(1.0, alpha=0.5).mul_(2).div_(mr.tensor(5.0))
    assert t.tolist() == pytest.approx([1.0, 1.4, 1.8])
    t.fill_(7)
    assert t.tolist() == [7.0, 7.0, 7.0]
    t[1] = 0.0
    t[mr.tensor([True, False, False])] = -1.0
    assert t.tolist() == [-1.0, 0.0, 7.0]
    t.copy_(np.array([1, 2, 3]))
    assert t.tolist() == [1.0, 2.0, 3.0] and t.dtype == np.float32
    t.zero_()
    assert t.tolist() == [0.0, 0.0, 0.0]
    assert t._version == 9


def test_in_place_errors_name_the_op_and_the_types():
    ints = mr.tensor([1, 2])
    with pytest.raises(RuntimeError, match=r"add_: result type float64 can't be cast to the "
                                           r"desired output type int64"):
        ints += np.array([0.5, 0.5])
    with pytest.raises(RuntimeError, match=r"add_: output with shape \(2,\) doesn't match the "
                                           r"broadcast shape"):
        mr.zeros(2).__iadd__(mr.ones(3, 2))


def test_zeroing_one_leafs_grad_leaves_anothers_alone():
    a = mr.randn(3, requires_grad=True)
    b = mr.randn(3, requires_grad=True)
    (a + b).sum().backward()  # Add hands gy to both inputs
    a.grad.zero_()
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3))
    nn.Linear(2, 2).zero_grad(set_to_none=False)  # writes grads in place: they are writable


# --------------------------------------------------------------------------- NumPy


def test_numpy_functions_refuse_tensors_and_name_the_minires_op():
    x = mr.randn(3, requires_grad=True)
    for call, hint in [(lambda: np.exp(x), r"numpy\.exp .*Use mr\.exp\(x\) or x\.exp\(\)"),
                       (lambda: np.abs(x), r"numpy\.absolute .*Use x\.abs\(\)"),
                       (lambda: np.mean(x), r"numpy\.mean .*Use mr\.mean\(x\) or x\.mean\(\)"),
                       (lambda: np.concatenate([x, x]), r"numpy\.concatenate .*mr\.cat")]:
        with pytest.raises(TypeError, match=hint):
            call()


def test_numpy_array_operators_with_a_tensor_stay_tensor_ops():
    x = mr.tensor([1.0, 2.0], dtype=mr.float64, requires_grad=True)
    y = np.array([3.0, 4.0]) * x + np.array([1.0, 1.0])
    assert isinstance(y, mr.Tensor) and y.grad_fn is not None
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 4.0]
    assert (np.array([1.5, 1.5]) < x.detach()).tolist() == [False, True]
    with pytest.raises(TypeError, match="with out="):
        a = np.zeros(2)
        a += x.detach()


def test_numpy_asarray_works_like_tensor_numpy():
    x = mr.tensor([1.0, 2.0])
    assert np.asarray(x).tolist() == [1.0, 2.0]
    with pytest.raises(RuntimeError, match="detach"):
        np.asarray(mr.tensor([1.0], requires_grad=True))


# --------------------------------------------------------------------------- read-only views


class ZeroesGyInPlace(Function):
    """A ReLU backward a student writes: zero gy where x <= 0, in place, and return it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x > 0)
        return x * (x > 0)

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_tensors
        gy[~mask] = 0
        return gy


class EditsSavedSoftmax(Function):
    """A softmax backward that turns its saved output into the gradient in place."""

    @staticmethod
    def forward(ctx, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        y *= gy - (gy * y).sum(axis=1, keepdims=True)
        return y


def test_a_backward_writing_into_gy_fails_naming_the_op():
    x = mr.tensor([[-1.0, 2.0], [3.0, -4.0]], requires_grad=True)
    # relu(x) + relu(-x): both backward passes would share one gy
    y = ZeroesGyInPlace.apply(x) + ZeroesGyInPlace.apply(-x)
    with pytest.raises(RuntimeError, match=r"ZeroesGyInPlace\.backward modified gy or an array "
                                           r"saved by forward in place"):
        y.sum().backward()


def test_a_backward_writing_into_a_saved_array_fails_naming_the_op():
    x = mr.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"EditsSavedSoftmax\.backward modified"):
        EditsSavedSoftmax.apply(x).sum().backward(retain_graph=True)


def test_backward_receives_read_only_arrays():
    seen = {}

    class Spy(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * 2

        @staticmethod
        def backward(ctx, gy):
            (x,) = ctx.saved_tensors
            seen["gy"], seen["x"] = gy.flags.writeable, x.flags.writeable
            return gy * 2

    x = mr.randn(3, requires_grad=True)
    Spy.apply(x).sum().backward()
    assert seen == {"gy": False, "x": False}
    assert x.grad.data.flags.writeable  # what reaches a leaf is its own writable array


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("retain_graph", [False, True])
def test_backward_releases_the_activations(retain_graph):
    mr.manual_seed(0)
    model = mr.models.resnet20()
    x, y = mr.randn(4, 3, 32, 32), mr.randint(0, 10, (4,))
    loss = F.cross_entropy(model(x), y)
    params = list(model.parameters())
    before = arrays_reachable_from(loss.grad_fn, skip=params)
    loss.backward(retain_graph=retain_graph)
    after = arrays_reachable_from(loss.grad_fn, skip=params)
    assert before > 1_000_000  # activations of a batch of 4: several MB
    if retain_graph:
        assert after == before
    else:
        assert after == 0  # nothing: the leaves' grads hang off the leaves, not the graph
        assert all(p.grad is not None for p in params)


def test_the_graph_can_still_be_walked_after_backward():
    x = mr.randn(4, 3, requires_grad=True)
    w = mr.randn(3, 2, requires_grad=True)
    loss = F.relu(x @ w).sum()
    loss.backward()
    node, names = loss.grad_fn, []
    while node is not None:
        names.append(node.name())
        parents = [e.grad_fn for e in node.inputs if e.grad_fn is not None]
        node = parents[0] if parents else None
    assert names == ["SumBackward", "ReLUBackward", "MatmulBackward"]
    assert loss.grad_fn.inputs[0].shape == (4, 2)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


class _KeepsAttributes(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.mask, ctx.in_shape = x > 0, x.shape  # op state: an array and metadata
        return x * ctx.mask

    @staticmethod
    def backward(ctx, gy):
        # y = x where x > 0  =>  gx = gy where x > 0
        return gy * ctx.mask


@pytest.mark.parametrize("retain_graph", [False, True])
def test_release_empties_the_ops_attributes_and_keeps_the_nodes_fields(retain_graph):
    x = mr.randn(5, requires_grad=True)
    y = _KeepsAttributes.apply(x)
    node = y.grad_fn
    assert set(vars(node)) == {"mask", "in_shape"}  # the op's namespace, nothing else
    y.sum().backward(retain_graph=retain_graph)
    np.testing.assert_array_equal(x.grad.numpy(), x.detach().numpy() > 0)
    assert set(vars(node)) == (set() if not retain_graph else {"mask", "in_shape"})
    assert node.function is _KeepsAttributes and node.needs_input_grad == (True,)
    assert node.name() == "_KeepsAttributesBackward"


@pytest.mark.parametrize("op", ["batch_norm", "batch_norm_act"])
def test_batch_norm_counts_its_update_of_the_running_statistics(op):
    from minires.ops.fused_norm import batch_norm_act

    norm = F.batch_norm if op == "batch_norm" else batch_norm_act
    x, mean, var = mr.randn(4, 3, 2, 2), mr.zeros(3), mr.ones(3)
    norm(x, mean, var, training=True)
    assert (mean._version, var._version) == (1, 1) and mean.numpy().any()
    norm(x, mean, var, training=False)  # evaluation only reads them
    assert (mean._version, var._version) == (1, 1)
    learned = mr.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"forward updates an input of shape \(3,\) in "
                                           r"place, but that input requires grad"):
        norm(x, learned, var, training=True)
    assert not learned.detach().numpy().any() and var._version == 1
