"""The NCCL path of minires.distributed, on a machine without a GPU.

``NcclComm`` talks to CuPy's ``cupy.cuda.nccl.NcclCommunicator`` with raw device
pointers, counts, NCCL datatype and op constants and stream pointers. Here a small
stand-in plays NCCL: a world of N threads whose communicators read and write the
arrays' memory through those pointers (host memory; the "device arrays" are NumPy
arrays that expose ``.data.ptr`` as CuPy's do), and a stand-in ``cupy.cuda`` records
the stream and event calls. So these tests check what minires passes to NCCL and in
which order it orders the streams; what only GPUs can show (that NCCL moves the bytes
between real devices, the speed, the overlap with backward) needs a multi-GPU machine.
"""

from __future__ import annotations

import ctypes
import threading
import types

import numpy as np
import pytest

import minires.distributed as dist
from minires import backend
from minires.distributed.comm import (
    NCCL_DTYPES,
    NcclComm,
    StagedComm,
    unique_id_from_array,
    unique_id_to_array,
)
from minires.distributed.group import ProcessGroup

# --------------------------------------------------------------------------- the stand-ins

DTYPE_OF = {}  # NCCL constant -> numpy dtype
fake_nccl = types.SimpleNamespace(available=True)
for _code, (_name, _attr) in enumerate(sorted(NCCL_DTYPES.items())):
    if _name != "bool":  # bool travels as NCCL_UINT8, whose own dtype is uint8
        setattr(fake_nccl, _attr, _code)
        DTYPE_OF[_code] = np.dtype(_name)
fake_nccl.NCCL_SUM, fake_nccl.NCCL_MAX, fake_nccl.NCCL_MIN = 100, 101, 102
REDUCE = {100: np.sum, 101: np.max, 102: np.min}


class DeviceArray(np.ndarray):
    """A NumPy array that shows its address as ``a.data.ptr``, as a CuPy array does."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


def device(array) -> DeviceArray:
    return np.ascontiguousarray(array).view(DeviceArray)


def memory(ptr: int, count: int, datatype: int) -> np.ndarray:
    """The ``count`` values of NCCL type ``datatype`` at address ``ptr``, as a view."""
    dtype = DTYPE_OF[datatype]
    buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buffer, dtype=dtype)


class FakeWorld:
    """N NCCL ranks in N threads: each collective meets at a barrier."""

    def __init__(self, size: int):
        self.size, self.barrier = size, threading.Barrier(size, timeout=10)
        self.slots = [None] * size
        self.calls = []  # (rank, name, count, datatype, op or root, stream)

    def communicator(self, rank: int):
        return FakeCommunicator(self, rank)


class FakeCommunicator:
    def __init__(self, world: FakeWorld, rank: int):
        self.world, self.rank = world, rank
        self.destroyed = False

    def _exchange(self, value: np.ndarray) -> list:
        self.world.slots[self.rank] = value.copy()
        self.world.barrier.wait()
        everyone = list(self.world.slots)
        self.world.barrier.wait()  # nobody overwrites a slot before all have read it
        return everyone

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        self.world.calls.append((self.rank, "allReduce", count, datatype, op, stream))
        everyone = self._exchange(memory(sendbuf, count, datatype))
        memory(recvbuf, count, datatype)[...] = REDUCE[op](np.stack(everyone), axis=0)

    def bcast(self, buff, count, datatype, root, stream):
        self.world.calls.append((self.rank, "bcast", count, datatype, root, stream))
        everyone = self._exchange(memory(buff, count, datatype))
        memory(buff, count, datatype)[...] = everyone[root]

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        self.world.calls.append((self.rank, "allGather", count, datatype, None, stream))
        everyone = self._exchange(memory(sendbuf, count, datatype))
        memory(recvbuf, count * self.world.size, datatype)[...] = np.concatenate(everyone)

    def destroy(self):
        self.destroyed = True


class FakeCuda:
    """``cupy.cuda``'s streams and events, recording what is ordered after what."""

    def __init__(self):
        self.log = []
        self.current = self.Stream(name="current")

    def get_current_stream(self):
        return self.current

    def Stream(self, non_blocking=False, name="communication"):
        cuda = self

        class Stream:
            ptr = 1000 + len(cuda.log)

            def wait_event(self, event):
                cuda.log.append(("wait", name, event.name))

        stream = Stream()
        stream.name = name
        return stream

    def Event(self, disable_timing=False):
        cuda = self

        class Event:
            done = True

            def record(self, stream):
                self.name = f"event on {stream.name}"
                cuda.log.append(("record", stream.name))

        return Event()


def run_ranks(size: int, body) -> list:
    """``body(rank, comm)`` in one thread per rank, each with an NcclComm; the results."""
    world = FakeWorld(size)
    results, errors = [None] * size, []

    def target(rank):
        try:
            comm = NcclComm(world.communicator(rank), fake_nccl, FakeCuda(), rank, size)
            results[rank] = body(rank, comm)
        except Exception as error:  # surfaced below, with the rank
            errors.append((rank, error))

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


# --------------------------------------------------------------------------- tests


def test_nccl_all_reduce_sum_max_min_in_place_with_the_right_count_and_types():
    def body(rank, comm):
        out = {}
        for op in ("sum", "max", "min"):
            buf = device(np.arange(5, dtype=np.float32) * (rank + 1))
            comm.all_reduce(buf, op)
            out[op] = buf.tolist()
        ints = device(np.array([rank, 10], dtype=np.int64))
        comm.all_reduce(ints, "sum")
        out["ints"] = ints.tolist()
        return out

    for r in run_ranks(3, body):
        assert r["sum"] == (np.arange(5) * 6).tolist()
        assert r["max"] == (np.arange(5) * 3).tolist()
        assert r["min"] == np.arange(5).tolist()
        assert r["ints"] == [3, 30]


def test_nccl_broadcast_and_all_gather():
    def body(rank, comm):
        buf = device(np.full(3, float(rank)))
        comm.broadcast(buf, src=2)
        out = device(np.zeros((3, 2)))
        comm.all_gather(device(np.array([rank, -rank], dtype=np.float64)), out)
        return buf.tolist(), out.tolist()

    for broadcast, gathered in run_ranks(3, body):
        assert broadcast == [2.0, 2.0, 2.0]
        assert gathered == [[0.0, 0.0], [1.0, -1.0], [2.0, -2.0]]


def test_nccl_runs_on_its_stream_after_the_current_streams_work():
    cuda = FakeCuda()
    world = FakeWorld(1)
    comm = NcclComm(world.communicator(0), fake_nccl, cuda, 0, 1)
    work = comm.all_reduce_async(device(np.ones(4, np.float64)), "sum")
    assert world.calls == [(0, "allReduce", 4, fake_nccl.NCCL_FLOAT64, fake_nccl.NCCL_SUM,
                            comm.stream.ptr)]
    assert cuda.log == [("record", "current"),  # the gradients are written...
                        ("wait", "communication", "event on current"),  # ...before sending
                        ("record", "communication")]
    work.wait()  # the current stream waits for the result; the host does not block
    assert cuda.log[-1] == ("wait", "current", "event on communication")
    assert work.is_completed()


def test_nccl_rejects_a_dtype_it_cannot_send():
    comm = NcclComm(FakeWorld(1).communicator(0), fake_nccl, FakeCuda(), 0, 1)
    with pytest.raises(TypeError, match="NCCL cannot send arrays of dtype complex128"):
        comm.all_reduce(device(np.ones(2, np.complex128)), "sum")


@pytest.mark.parametrize("uid", [bytes(range(128)), tuple((-1) ** i * (i % 128) for i in
                                                          range(128))])
def test_nccl_unique_id_survives_the_broadcast_in_both_cupy_forms(uid):
    """CuPy 14 gives the id as bytes, CuPy 13 as a tuple of C chars (-128..127)."""
    array = unique_id_to_array(uid)
    assert array.dtype == np.int8 and array.shape == (128,)
    expected = uid if isinstance(uid, bytes) else bytes(b % 256 for b in uid)
    assert unique_id_from_array(array, "14.2.0") == expected
    as_tuple = unique_id_from_array(array, "13.6.0")
    assert as_tuple == tuple(np.frombuffer(expected, np.int8).tolist())
    with pytest.raises(ValueError, match="unique id has 5 bytes"):
        unique_id_to_array(b"short")


def test_nccl_bootstrap_broadcasts_rank0s_id_over_mpi_and_joins_with_each_rank():
    """Rank 0 draws the id, the host communicator broadcasts it, every rank creates its
    NcclCommunicator(world_size, id, rank)."""
    drawn = bytes(range(1, 129))
    made = []

    class HostComm:  # rank 1 of 2: receives rank 0's id through broadcast
        rank, size = 1, 2

        def broadcast(self, buf, src):
            assert src == 0 and buf.dtype == np.int8
            buf[...] = np.frombuffer(drawn, np.int8)

    nccl = types.SimpleNamespace(
        get_unique_id=lambda: pytest.fail("only rank 0 draws the id"),
        NcclCommunicator=lambda n, uid, rank: made.append((n, uid, rank)) or object())
    cupy = types.SimpleNamespace(__version__="14.0.1", cuda=types.SimpleNamespace(
        nccl=nccl, Stream=FakeCuda().Stream))
    comm = NcclComm.bootstrap(HostComm(), cupy)
    assert made == [(2, drawn, 1)] and (comm.rank, comm.size) == (1, 2)


def test_process_group_sends_gpu_arrays_to_nccl_and_host_arrays_to_mpi(monkeypatch):
    """The seam: the array's device picks the communicator; NCCL is made once, lazily."""
    host = types.SimpleNamespace(rank=0, size=2, all_reduce=lambda buf, op: None,
                                 destroy=lambda: None)
    made = []

    def bootstrap(cls, host_comm, cupy):
        made.append(host_comm)
        return NcclComm(FakeWorld(1).communicator(0), fake_nccl, FakeCuda(), 0, 1)

    monkeypatch.setattr(NcclComm, "bootstrap", classmethod(bootstrap))
    monkeypatch.setattr(backend, "device_of",
                        lambda a: "cuda" if isinstance(a, DeviceArray) else "cpu")
    monkeypatch.setattr(backend.cuda, "device_count", staticmethod(lambda: 2))
    group = ProcessGroup(host, local_size=2, cupy=types.SimpleNamespace(
        cuda=types.SimpleNamespace(nccl=fake_nccl)))
    assert group.comm_for(np.ones(2)) is host
    gpu = group.comm_for(device(np.ones(2)))
    assert isinstance(gpu, NcclComm) and made == [host]
    assert group.comm_for(device(np.ones(3))) is gpu  # created once
    group.destroy()
    assert gpu.communicator.destroyed


def test_process_group_without_nccl_stages_gpu_arrays_through_the_host(monkeypatch):
    monkeypatch.setattr(backend, "device_of",
                        lambda a: "cuda" if isinstance(a, DeviceArray) else "cpu")
    host = types.SimpleNamespace(rank=0, size=2)
    group = ProcessGroup(host, cupy=types.SimpleNamespace(
        cuda=types.SimpleNamespace(nccl=types.SimpleNamespace(available=False))))
    with pytest.warns(UserWarning, match="CuPy has no NCCL"):
        comm = group.comm_for(device(np.ones(2)))
    assert isinstance(comm, StagedComm)


def test_too_many_processes_per_machine_for_its_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backend, "device_of", lambda a: "cuda")
    monkeypatch.setattr(backend.cuda, "device_count", staticmethod(lambda: 1))
    group = ProcessGroup(types.SimpleNamespace(rank=0, size=2), local_size=2,
                         cupy=types.SimpleNamespace(cuda=types.SimpleNamespace(nccl=fake_nccl)))
    with pytest.raises(RuntimeError, match="2 processes on this machine share 1 GPU"):
        group.comm_for(device(np.ones(2)))


def test_a_mean_over_nccl_divides_after_the_wait(monkeypatch):
    monkeypatch.setattr(backend, "device_of", lambda a: "cuda")

    def body(rank, comm):
        group = ProcessGroup(types.SimpleNamespace(rank=rank, size=3, destroy=lambda: None))
        group._device = comm
        buf = device(np.full(4, float(rank)))
        work = group.all_reduce_async(buf, dist.ReduceOp.AVG)
        work.wait()
        return buf.tolist()

    for r in run_ranks(3, body):
        assert r == [1.0] * 4
