"""The communicators: who moves the bytes of a collective, chosen by the array's device.

Every collective of minires goes through a ``ProcessGroup`` (group.py), and the group
hands each array to one of these, exactly as ``backend.py`` hands it to NumPy or CuPy:

* ``LocalComm``: a world of one process. Every collective is the identity; no MPI needed.
* ``MPIComm``: NumPy arrays, through mpi4py's buffer interface (``Allreduce``, ``Bcast``,
  ``Allgather`` with capital letters: raw memory, never pickled objects).
* ``NcclComm``: CuPy arrays, through NCCL (``cupy.cuda.nccl``): the GPUs exchange data
  directly (NVLink, PCIe or InfiniBand), without a copy to the host. Its operations run
  in order on one communication stream, as PyTorch's NCCL process group does.
* ``StagedComm``: CuPy arrays where CuPy has no NCCL: copy to the host, MPI, copy back.
  Correct but slow; a warning says so.

A communicator works on C-contiguous 1-D buffers; the group makes those. The reduce
operations here are "sum", "max" and "min": the group turns a mean into a sum and a
division, so every communicator averages the same way.
"""

from __future__ import annotations

import numpy

from .. import backend

# --------------------------------------------------------------------------- handles


class Work:
    """A collective in flight, as returned by the asynchronous calls: ``wait()`` makes
    its result visible (PyTorch's name for the same handle). ``then`` runs after the
    wait, once (the division of a mean)."""

    def __init__(self, wait=None, test=None, then=None):
        self._wait, self._test, self._then = wait, test, then
        self._done = False

    def wait(self) -> None:
        """Block until the collective is done and its result is in place (once; later
        calls return at once)."""
        if self._done:
            return
        if self._wait is not None:
            self._wait()
        self._done = True
        if self._then is not None:
            self._then()

    def is_completed(self) -> bool:
        """True once the transfer has finished (calling it also lets MPI make progress:
        without a progress thread, MPI moves a nonblocking collective along only inside
        MPI calls)."""
        if self._done:
            return True
        return True if self._test is None else bool(self._test())


# --------------------------------------------------------------------------- one process


class LocalComm:
    """A world of one process: the data is already everyone's."""

    rank, size = 0, 1

    def all_reduce(self, buf, op: str) -> None:
        pass

    def all_reduce_async(self, buf, op: str) -> Work:
        return Work()

    def broadcast(self, buf, src: int) -> None:
        pass

    def all_gather(self, buf, out) -> None:
        out[0] = buf  # out: (1, n)

    def all_gather_bytes(self, data: bytes) -> list:
        return [data]

    def broadcast_bytes(self, data: bytes, src: int) -> bytes:
        return data

    def barrier(self) -> None:
        pass

    def destroy(self) -> None:
        pass


# --------------------------------------------------------------------------- MPI


class MPIComm:
    """Collectives on NumPy arrays over an mpi4py communicator."""

    def __init__(self, comm, MPI):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._ops = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def all_reduce(self, buf, op: str) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])

    def all_reduce_async(self, buf, op: str) -> Work:
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
        return Work(wait=request.Wait, test=request.Test)

    def broadcast(self, buf, src: int) -> None:
        self.comm.Bcast(buf, root=src)

    def all_gather(self, buf, out) -> None:
        self.comm.Allgather(buf, out)

    def all_gather_bytes(self, data: bytes) -> list:
        """Byte strings of any lengths from every rank, in rank order."""
        lengths = numpy.zeros(self.size, numpy.int64)
        self.comm.Allgather(numpy.array([len(data)], numpy.int64), lengths)
        out = numpy.empty(int(lengths.sum()), numpy.uint8)
        self.comm.Allgatherv(numpy.frombuffer(data, numpy.uint8), (out, lengths))
        ends = numpy.cumsum(lengths)
        return [out[end - n:end].tobytes() for n, end in zip(lengths, ends)]

    def broadcast_bytes(self, data: bytes, src: int) -> bytes:
        length = numpy.array([len(data) if self.rank == src else 0], numpy.int64)
        self.comm.Bcast(length, root=src)
        buf = (numpy.frombuffer(data, numpy.uint8).copy() if self.rank == src
               else numpy.empty(int(length[0]), numpy.uint8))
        self.comm.Bcast(buf, root=src)
        return buf.tobytes()

    def barrier(self) -> None:
        self.comm.Barrier()

    def destroy(self) -> None:
        if self.comm != self.MPI.COMM_WORLD and not self.MPI.Is_finalized():
            self.comm.Free()


# --------------------------------------------------------------------------- GPU, no NCCL


class StagedComm:
    """CuPy arrays through the host's MPI: the fallback where CuPy has no NCCL."""

    def __init__(self, host: MPIComm):
        self.host, self.rank, self.size = host, host.rank, host.size

    def all_reduce(self, buf, op: str) -> None:
        staged = backend.to_numpy(buf)
        self.host.all_reduce(staged, op)
        buf[...] = backend.to_device(staged, "cuda")

    def all_reduce_async(self, buf, op: str) -> Work:
        self.all_reduce(buf, op)
        return Work()

    def broadcast(self, buf, src: int) -> None:
        staged = backend.to_numpy(buf)
        self.host.broadcast(staged, src)
        buf[...] = backend.to_device(staged, "cuda")

    def all_gather(self, buf, out) -> None:
        staged = numpy.empty(out.shape, out.dtype)
        self.host.all_gather(backend.to_numpy(buf), staged)
        out[...] = backend.to_device(staged, "cuda")

    def destroy(self) -> None:
        pass


# --------------------------------------------------------------------------- NCCL

# numpy dtype name -> name of CuPy's NCCL datatype constant (bool travels as its bytes)
NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
               "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64",
               "bool": "NCCL_UINT8"}
NCCL_OPS = {"sum": "NCCL_SUM", "max": "NCCL_MAX", "min": "NCCL_MIN"}
UNIQUE_ID_BYTES = 128  # NCCL_UNIQUE_ID_BYTES


def unique_id_to_array(uid) -> numpy.ndarray:
    """NCCL's unique id as 128 int8 values, to broadcast over MPI. CuPy 14 returns it as
    ``bytes``, earlier versions as a tuple of C ``char`` values (-128..127)."""
    if isinstance(uid, (bytes, bytearray)):
        array = numpy.frombuffer(bytes(uid), numpy.int8).copy()
    else:
        array = numpy.asarray(uid, dtype=numpy.int64).astype(numpy.int8)
    if array.size != UNIQUE_ID_BYTES:
        raise ValueError(f"NCCL unique id has {array.size} bytes, expected {UNIQUE_ID_BYTES}")
    return array


def unique_id_from_array(array: numpy.ndarray, cupy_version: str):
    """The id in the form ``NcclCommunicator`` of this CuPy version takes."""
    if int(cupy_version.split(".")[0]) >= 14:
        return numpy.asarray(array, numpy.int8).tobytes()
    return tuple(int(v) for v in numpy.asarray(array, numpy.int8))


class NcclComm:
    """Collectives on CuPy arrays through one ``cupy.cuda.nccl.NcclCommunicator``.

    Every operation is queued on this communicator's own stream, after the work already
    queued on the current stream (an event orders them), so gradients are complete
    before they are sent; ``Work.wait()`` makes the current stream wait for the result.
    Neither call blocks the host. One stream keeps the communicator's operations in the
    order they were issued, which is the same order on every rank.

    ``nccl`` and ``cuda`` are CuPy's ``cupy.cuda.nccl`` and ``cupy.cuda`` modules; they
    are passed in so the bookkeeping can be tested with stand-ins on a machine without
    a GPU.
    """

    def __init__(self, communicator, nccl, cuda, rank: int, size: int):
        self.communicator, self.nccl, self.cuda = communicator, nccl, cuda
        self.rank, self.size = rank, size
        self.stream = cuda.Stream(non_blocking=True)

    @classmethod
    def bootstrap(cls, host, cupy) -> NcclComm:
        """Create the communicator of every rank: rank 0 draws NCCL's unique id, MPI
        broadcasts it, and each rank joins with its rank number. Collective: every rank
        calls this at the same point."""
        nccl = cupy.cuda.nccl
        uid = numpy.zeros(UNIQUE_ID_BYTES, numpy.int8)
        if host.rank == 0:
            uid[...] = unique_id_to_array(nccl.get_unique_id())
        host.broadcast(uid, 0)
        communicator = nccl.NcclCommunicator(host.size,
                                             unique_id_from_array(uid, cupy.__version__),
                                             host.rank)
        return cls(communicator, nccl, cupy.cuda, host.rank, host.size)

    def _datatype(self, array) -> int:
        name = NCCL_DTYPES.get(numpy.dtype(array.dtype).name)
        if name is None:
            raise TypeError(f"NCCL cannot send arrays of dtype {array.dtype}; supported: "
                            f"{', '.join(sorted(NCCL_DTYPES))}")
        return getattr(self.nccl, name)

    def _enqueue(self, launch) -> Work:
        """Run ``launch(stream_ptr)`` on the communication stream once the current
        stream's queued work is done; the Work makes the current stream wait for it."""
        current = self.cuda.get_current_stream()
        ready = self.cuda.Event(disable_timing=True)
        ready.record(current)
        self.stream.wait_event(ready)
        launch(self.stream.ptr)
        done = self.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return Work(wait=lambda: current.wait_event(done), test=lambda: done.done)

    def all_reduce_async(self, buf, op: str) -> Work:
        datatype, nccl_op = self._datatype(buf), getattr(self.nccl, NCCL_OPS[op])
        ptr = buf.data.ptr  # in place: the send and the receive buffer are the same
        return self._enqueue(lambda stream: self.communicator.allReduce(
            ptr, ptr, buf.size, datatype, nccl_op, stream))

    def all_reduce(self, buf, op: str) -> None:
        self.all_reduce_async(buf, op).wait()

    def broadcast(self, buf, src: int) -> None:
        datatype, ptr = self._datatype(buf), buf.data.ptr
        self._enqueue(lambda stream: self.communicator.bcast(
            ptr, buf.size, datatype, src, stream)).wait()

    def all_gather(self, buf, out) -> None:
        datatype = self._datatype(buf)
        self._enqueue(lambda stream: self.communicator.allGather(
            buf.data.ptr, out.data.ptr, buf.size, datatype, stream)).wait()

    def destroy(self) -> None:
        self.communicator.destroy()
