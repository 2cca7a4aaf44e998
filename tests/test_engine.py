"""The autograd engine: graphs, accumulation, modes and the Tensor surface."""

import types

import numpy as np
import pytest

import minires as mr


def test_diamond_gets_both_paths():
    x = mr.tensor(3.0, requires_grad=True)
    a = x * 2  # two consumers of a: gradient must add up
    y = a * a + a
    y.backward()
    assert y.item() == 42.0
    assert x.grad.item() == pytest.approx(2 * (2 * 6 + 1))


def test_deep_chain_of_10000_ops_does_not_overflow_the_stack():
    x = mr.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** 10_000, rel=1e-3)


def test_leaf_gradients_accumulate_across_backward_calls():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2 + 3, 4 + 3])


def test_only_leaves_keep_grad_unless_retained():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    k = x * 3
    k.retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad.numpy(), [2.0, 4.0])  # d(h k)/dk = h
    np.testing.assert_allclose(x.grad.numpy(), [12.0, 24.0])  # d(6 x^2)/dx = 12 x


def test_no_grad_records_nothing():
    x = mr.tensor([1.0], requires_grad=True)
    with mr.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert mr.is_grad_enabled()


def test_second_backward_through_freed_graph_raises_clearly():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_backward_of_non_scalar_needs_a_gradient():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs.*shape \\(2,\\)"):
        (x * 2).backward()
    (x * 2).backward(mr.tensor([1.0, 0.5]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 1.0])


def test_backward_gradient_shape_is_checked():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(mr.tensor([1.0, 2.0, 3.0]))


def test_backward_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mr.tensor([1.0]).sum().backward()


def test_tensor_hooks_see_and_replace_gradients():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    y = x * 3
    handle = y.register_hook(lambda g: seen.append(g.numpy().copy()))
    x.register_hook(lambda g: g * 10)
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0, 1.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])
    handle.remove()
    assert y.grad_fn.hooks == []


def test_detach_cuts_the_graph_and_shares_data():
    x = mr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    assert d.data is y.data  # the same array, no copy
    d[0] = 10.0  # allowed: d needs no gradient; y sees it, as in PyTorch
    assert y.detach().tolist() == [10.0, 4.0]
    assert y._version == d._version == 1  # and so does y's version counter


def test_float32_stays_float32_with_python_scalars():
    x = mr.randn(3)
    for y in (x * 2, 2 * x, x + 1, x / 3, x - 0.5, x ** 2, 1 / (x + 5)):
        assert y.dtype == np.float32


def test_integer_tensors_promote_to_the_floating_dtype_as_in_pytorch():
    assert (mr.tensor([1, 2]) * 0.5).dtype == np.float32
    assert (mr.tensor([1, 2]) + mr.randn(2)).dtype == np.float32
    assert (mr.randn(2).double() - mr.tensor([1, 2])).dtype == np.float64


def test_ints_follow_numpy_and_cannot_require_grad():
    assert mr.tensor([1, 2]).dtype == np.int64
    assert mr.tensor([1.5]).dtype == np.float32
    with pytest.raises(RuntimeError, match="floating point"):
        mr.tensor([1, 2], requires_grad=True)


def test_tensor_surface():
    x = mr.arange(24, dtype=np.float64).reshape(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.device == "cpu"
    assert x.size(1) == 3 and x.numel() == 24
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.transpose(0, 2).shape == (4, 3, 2)
    assert x.sum(dim=1, keepdim=True).shape == (2, 1, 4)
    assert x.mean().item() == 11.5
    values, indices = x.max(dim=2)
    np.testing.assert_array_equal(indices.numpy(), np.full((2, 3), 3))
    assert x[1, 2, 3].item() == 23.0
    assert (x @ mr.ones(4, 2, dtype=np.float64)).shape == (2, 3, 2)
    assert x.to("cpu") is x and x.cpu() is x
    assert x.float().dtype == np.float32
    assert (x == 23.0).numpy().sum() == 1
    assert "grad_fn=<MulBackward>" in repr(mr.tensor([1.0], requires_grad=True) * 2)


def test_numpy_of_a_tensor_requiring_grad_points_to_detach():
    with pytest.raises(RuntimeError, match="detach"):
        mr.tensor([1.0], requires_grad=True).numpy()


def test_manual_seed_makes_randn_reproducible():
    mr.manual_seed(3)
    a = mr.randn(5).numpy()
    mr.manual_seed(3)
    np.testing.assert_array_equal(a, mr.randn(5).numpy())
    assert not np.array_equal(a, mr.randn(5).numpy())


def test_cuda_request_without_gpu_says_what_to_install():
    if mr.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="minires\\[cuda"):
        mr.zeros(2).to("cuda")


def test_use_kernels_switches_dispatch_to_reference():
    from minires import backend

    fake_xp = types.SimpleNamespace(__name__="fake_cupy")  # any array module but NumPy
    ran = []

    @backend.overridable
    def helper(xp, v):
        ran.append("reference")
        return v + 1

    backend.register_kernel("helper", lambda xp, v: ran.append("kernel") or v + 1)
    try:
        previous = backend.use_kernels(True)
        assert helper(np, 1) == 2 and ran == ["reference"]  # NumPy: always the reference
        assert helper(fake_xp, 1) == 2 and ran[-1] == "kernel"
        assert backend.use_kernels(False) is True  # returns what it replaces
        assert not backend.kernels_enabled()
        assert helper(fake_xp, 1) == 2 and ran[-1] == "reference"  # switched off
        assert helper.reference(fake_xp, 1) == 2 and ran[-1] == "reference"
        backend.use_kernels(True)
        assert helper(fake_xp, 1) == 2 and ran[-1] == "kernel"  # and on again
        assert ran == ["reference", "kernel", "reference", "reference", "kernel"]
    finally:
        backend.use_kernels(previous)
        backend._kernels.pop("helper")


def test_no_module_is_shadowed_by_a_name_of_its_package():
    import importlib
    import pkgutil

    shadowed = set()
    for info in pkgutil.walk_packages(mr.__path__, "minires."):
        if info.name.endswith("__main__"):  # running it is the command line
            continue
        module = importlib.import_module(info.name)
        parent, _, leaf = info.name.rpartition(".")
        if getattr(importlib.import_module(parent), leaf) is not module:
            shadowed.add(info.name)
    assert shadowed == set()


def test_the_engine_modules_are_reachable_beside_the_factories_of_the_same_names():
    import importlib

    import minires.autograd
    import minires.gradient_check
    import minires.tensors

    for module in (minires.tensors, minires.autograd, minires.gradient_check):
        assert isinstance(module, types.ModuleType)
    assert importlib.import_module("minires.tensors").Tensor is mr.Tensor
    assert importlib.import_module("minires.autograd").Function is mr.Function
    assert minires.gradient_check.gradcheck is mr.gradcheck
    assert mr.tensor([1.0]).shape == (1,)  # PyTorch's factory


class _AddOptional(mr.Function):
    """y = x + b, with b optional (None)."""

    @staticmethod
    def forward(ctx, x, b):
        ctx.seen = (b is None, ctx.needs_input_grad)
        return x if b is None else x + b

    @staticmethod
    def backward(ctx, gy):
        # y = x + b  =>  gx = gy, gb = gy (None when b was left out)
        return gy, (gy if ctx.needs_input_grad[1] else None)


def test_an_optional_input_left_out_reaches_forward_as_none_and_gets_no_gradient():
    x = mr.randn(3, requires_grad=True)
    y = _AddOptional.apply(x, None)
    assert y.grad_fn.seen == (True, (True, False))
    assert y.grad_fn.inputs[1] is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3, np.float32))
    b = mr.randn(3, requires_grad=True)
    _AddOptional.apply(x, b).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3, np.float32))


def test_a_gradient_for_an_input_left_out_is_an_error_naming_the_op():
    class GradForMissing(_AddOptional):
        @staticmethod
        def backward(ctx, gy):
            return gy, gy  # but b was None

    with pytest.raises(RuntimeError, match=r"GradForMissing\.backward returned a gradient "
                                           r"for input 1, which was left out \(None\)"):
        GradForMissing.apply(mr.randn(3, requires_grad=True), None).sum().backward()


class _CountInto(mr.Function):
    """y = 2 x, and forward adds 1 to ``counts`` in place (as BatchNorm updates its
    running statistics)."""

    @staticmethod
    def forward(ctx, x, counts):
        ctx.mark_dirty(counts)
        counts += 1
        return 2 * x

    @staticmethod
    def backward(ctx, gy):
        # y = 2 x  =>  gx = 2 gy; counts gets none
        return 2 * gy, None


def test_mark_dirty_lets_forward_update_an_input_and_moves_its_version():
    x, counts = mr.randn(3, requires_grad=True), mr.zeros(2)
    saved = counts * x[:2]  # Mul saved counts' array
    _CountInto.apply(x, counts).sum().backward()
    np.testing.assert_array_equal(counts.numpy(), [1, 1])
    assert counts._version == 1
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        saved.sum().backward()


def test_mark_dirty_refuses_an_input_that_requires_grad_before_it_changes():
    counts = mr.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"_CountInto\.forward updates an input of shape "
                                           r"\(2,\) in place, but that input requires grad"):
        _CountInto.apply(mr.randn(3), counts)
    np.testing.assert_array_equal(counts.detach().numpy(), [0, 0])


def test_mark_dirty_refuses_an_array_that_is_not_an_input():
    class DirtiesACopy(_CountInto):
        @staticmethod
        def forward(ctx, x, counts):
            ctx.mark_dirty(counts.copy())
            return 2 * x

    with pytest.raises(RuntimeError, match="not one of its inputs"):
        DirtiesACopy.apply(mr.randn(3), mr.zeros(2))


def test_an_input_passed_to_apply_as_a_keyword_is_refused():
    with pytest.raises(TypeError, match=r"_AddOptional\.apply: b is an input of forward; "
                                        r"pass it positionally"):
        _AddOptional.apply(mr.randn(3), b=None)
