"""The CPU thread pool of the fast path (cpu_threads.parallel_rows): every row once, errors
reach the caller, OpenBLAS's own thread count comes back, forked children work, and the
fast path gives the same numbers on one thread as on several."""

import multiprocessing

import numpy as np
import pytest

import minires as mr
import minires.nn.functional as F
from minires import cpu_threads, models


@pytest.fixture
def threads():
    """Run with a given number of CPU threads; restores the default."""
    before = cpu_threads._cpu_threads
    yield cpu_threads.set_cpu_threads
    cpu_threads.set_cpu_threads(before)


def needs_pool():
    if cpu_threads.parts_for(np) < 2:
        pytest.skip("no OpenBLAS found to hold to one thread, or one usable core: no pool")


def test_every_row_is_handed_out_once_in_disjoint_parts(threads):
    threads(3)
    needs_pool()
    parts = []
    cpu_threads.parallel_rows(np, 10, lambda lo, hi: parts.append((lo, hi)))
    assert sorted(parts) == [(0, 3), (3, 6), (6, 10)]
    parts.clear()
    cpu_threads.parallel_rows(np, 2, lambda lo, hi: parts.append((lo, hi)))  # fewer rows
    assert sorted(parts) == [(0, 1), (1, 2)]


def test_an_error_in_a_part_reaches_the_caller_and_the_pool_survives(threads):
    threads(2)
    needs_pool()

    def fail_late(lo, hi):
        if lo > 0:
            raise ValueError(f"part {lo}")

    with pytest.raises(ValueError, match="part"):
        cpu_threads.parallel_rows(np, 4, fail_late)
    out = np.zeros(4)
    cpu_threads.parallel_rows(np, 4, lambda lo, hi: out.__setitem__(slice(lo, hi), 1))
    assert out.tolist() == [1, 1, 1, 1]


def test_openblas_threads_are_held_to_one_and_given_back(threads):
    threads(2)
    needs_pool()
    setter, getter = cpu_threads._openblas
    before = getter()
    during = []
    cpu_threads.parallel_rows(np, 2, lambda lo, hi: during.append(getter()))
    assert during == [1, 1] and getter() == before


def test_nested_calls_and_other_array_libraries_run_as_one_part(threads):
    threads(2)
    needs_pool()
    inner = []
    cpu_threads.parallel_rows(np, 2, lambda lo, hi: cpu_threads.parallel_rows(
        np, 4, lambda a, b: inner.append((a, b))))
    # the caller's part cuts again, the worker's part runs whole: no deadlock either way
    assert sorted(inner) == [(0, 2), (0, 4), (2, 4)]
    assert cpu_threads.parts_for(object()) == 1  # e.g. CuPy: the plain sequential calls


def _rows_in_child():
    out = np.zeros(6)
    cpu_threads.parallel_rows(np, 6, lambda lo, hi: out.__setitem__(slice(lo, hi), lo))
    return out.tolist()


def test_a_forked_child_starts_its_own_pool(threads):
    threads(2)
    needs_pool()
    cpu_threads.parallel_rows(np, 2, lambda lo, hi: None)  # the parent's pool exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_rows_in_child) == [0, 0, 0, 3, 3, 3]


def test_one_thread_and_several_give_the_same_training_step(threads):
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16))
    target = np.array([1, 2, 3, 4])

    def grads():
        mr.manual_seed(0)
        model = models.resnet20().double()
        F.cross_entropy(model(mr.tensor(x)), mr.tensor(target)).backward()
        return {k: p.grad.numpy() for k, p in model.named_parameters()}

    threads(1)
    one = grads()
    threads(2)
    several = grads()
    for k in one:
        np.testing.assert_allclose(several[k], one[k], rtol=1e-10, atol=1e-13)


@pytest.fixture
def tile_bytes():
    """Run with a given tile size; restores the default."""
    before = cpu_threads._tile_bytes
    yield cpu_threads.set_tile_bytes
    cpu_threads.set_tile_bytes(before)


def test_tiles_cover_the_columns_once_at_the_size_asked_for(tile_bytes):
    tile_bytes(400)
    pieces = list(cpu_threads.tiles(np, 10, 1000, 4))  # 100 columns of 4 bytes per tile
    assert pieces[0] == (10, 110) and pieces[-1] == (910, 1000) and len(pieces) == 10
    assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))
    tile_bytes(1)
    assert list(cpu_threads.tiles(np, 0, 3, 4)) == [(0, 1), (1, 2), (2, 3)]  # at least 1
    assert list(cpu_threads.tiles(object(), 0, 100, 4)) == [(0, 100)]  # e.g. CuPy: one tile
    assert list(cpu_threads.tiles(np, 5, 5, 4)) == []


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (1, 1, 0), (3, 2, 1), (1, 2, 0)])
def test_small_tiles_and_one_tile_give_the_same_convolution(tile_bytes, kernel, stride,
                                                            padding):
    from minires.ops import fast_conv

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 12, 10))
    w = rng.standard_normal((4, 3, kernel, kernel))
    OH, OW = (12 + 2 * padding - kernel) // stride + 1, (10 + 2 * padding - kernel) // stride + 1
    gy = rng.standard_normal((5, 4, OH, OW))

    def run():
        xt, wt = mr.tensor(x, requires_grad=True), mr.tensor(w, requires_grad=True)
        y = fast_conv.conv2d(xt, wt, stride=stride, padding=padding)
        y.backward(mr.tensor(gy))
        return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()

    tile_bytes(1 << 40)
    whole = run()
    tile_bytes(1)  # tiles of one column (or one image)
    tiled = run()
    for a, b in zip(tiled, whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
