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
