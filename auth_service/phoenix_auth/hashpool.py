"""One hashing budget per pod: the supervisor hashes for all of its workers.

Password hashing is the login's cost, and its capacity is the CPU the pod may use. With W worker
processes each owning T threads, either W*T > C (the hashes oversubscribe the cores and the CFS
quota throttles them) or a worker whose clients queue waits while another worker's threads sit
idle. So with several workers the supervising process (`server.run`) runs the only hashing
threads, C of them, fed by one FIFO queue: every worker submits over a Unix socket and is served
in arrival order, so any connection pattern sees the whole pod's capacity and no worker starves.
With one worker its own pool is the same thing and no socket is used.

C is `cpu_budget()`: the cgroup's CPU quota rounded up (what the pod's CPU limit grants), else the
CPUs this process may run on. `PHOENIX_HASH_THREADS` overrides it, for the pod.

The socket lives in a fresh 0700 directory of the supervisor's (same user, same pod); passwords
cross it, as they cross the process boundary of the request, and nothing else listens on it.
Frames are a 4-byte big-endian length and a JSON object; requests carry an id so one connection
per worker multiplexes all of its concurrent logins.

The queue's depth is published in a shared page beside the socket (`DEPTH_FILE`): an 8-byte
count of the jobs received and not yet done, all workers' (only the server writes it), then one
8-byte slot per worker with its admitted logins that have not submitted their verify yet (only
that worker writes its slot; it holds a lock on the slot's byte while it lives, and the server
zeroes slots nobody holds, i.e. those of dead workers). A worker sums the page with one read
(`DepthGauge`) to decide, before it reads a login's body, whether that login would wait longer
than the admission bound (login.py), so a login it sheds costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import itertools
import json
import logging
import math
import mmap
import os
import queue
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("phoenix.hashpool")

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024  # a password is at most PHOENIX_MAX_PASSWORD_BYTES (1 KiB by default)
SOCKET_ENV = "PHOENIX_HASH_SOCKET"  # set by the supervisor for its workers
DEPTH_FILE = "depth"  # beside the socket: the queue's depth, written by the server only
SLOTS = 64  # workers that can publish their admitted logins not yet hashing (more: counted locally)
_DEPTH = struct.Struct("=q")  # native order, 8-byte aligned: read and written whole
_PAGE = struct.Struct(f"={1 + SLOTS}q")  # the depth, then one slot per worker
_claimed: set[int] = set()  # slots this process holds (POSIX locks never conflict within a process)


def _slot_offset(slot: int) -> int:
    return _DEPTH.size * (1 + slot)


class HashServiceUnavailable(Exception):
    """The pod's hashing service cannot be reached (the supervisor is stopping or gone)."""


class HashStartedLate(Exception):
    """The job reached a hashing thread after its `start_by` time and was not run."""


# ----------------------------------------------------------------------------- the budget
def cpu_budget(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the cgroup CPU quota rounded up, else its affinity."""
    quota = _cgroup_quota(cgroup_root)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if quota is None:
        return max(1, cpus)
    return max(1, min(cpus, math.ceil(quota - 1e-9)))


def _cgroup_quota(root: Path) -> float | None:
    """Cores granted by the CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None: no quota."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    for v1 in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        with contextlib.suppress(OSError, ValueError):
            quota_us = int((root / v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((root / v1 / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    return None


# ----------------------------------------------------------------------------- framing
def _peer_pid(conn: socket.socket) -> int:
    """The connecting worker's pid (SO_PEERCRED), to count jobs per worker; 0 where unknown."""
    with contextlib.suppress(OSError, AttributeError, struct.error):
        pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return int(pid)
    return 0


def _pack(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


# ----------------------------------------------------------------------------- supervisor side
Operation = Callable[..., Any]
LoadObserver = Callable[[int, int, "int | None"], None]  # (in flight, peak, pid of a started job's worker)


def metrics_observer() -> LoadObserver:
    """Export the hash server's load to /metrics (supervisor side).

    Call after `PROMETHEUS_MULTIPROC_DIR` is set (server.run does): the supervisor writes its
    values there and every worker's /metrics reads them, as it reads the other workers'.
    """
    from prometheus_client import Counter, Gauge

    in_flight = Gauge(
        "phoenix_hash_in_flight",
        "Password verifies/hashes running now on the server's hash service (at most its threads).",
        registry=None,
        multiprocess_mode="livemax",
    )
    peak = Gauge(
        "phoenix_hash_in_flight_peak",
        "Most verifies/hashes ever running at once on the server's hash service since it started.",
        registry=None,
        multiprocess_mode="max",
    )
    jobs = Counter(
        "phoenix_hash_jobs",
        "Jobs run by the server's hash service, by the worker process (pid) that submitted them.",
        ("worker",),
        registry=None,
    )

    def observe(now: int, most: int, worker: int | None) -> None:
        in_flight.set(now)
        peak.set(most)
        if worker is not None:
            jobs.labels(worker=str(worker)).inc()

    return observe


class _Job:
    """One request on the server's queue; `state` moves once from QUEUED, under the load lock."""

    QUEUED, STARTED, LATE = 0, 1, 2
    __slots__ = ("conn", "lock", "request", "state", "worker")

    def __init__(
        self, conn: socket.socket, lock: threading.Lock, worker: int, request: dict[str, Any]
    ) -> None:
        self.conn, self.lock, self.worker, self.request = conn, lock, worker, request
        self.state = _Job.QUEUED

    def reply(self, message: dict[str, Any]) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.conn.sendall(_pack(message))


class HashServer:
    """C hashing threads behind one FIFO queue, reached through a Unix socket (supervisor side).

    `operations` maps an operation name to the function that does it (the PasswordHasher's
    `_timed_check`, `hash` and `_sample_hash`): a worker names what to run, never code.
    """

    def __init__(
        self, operations: dict[str, Operation], threads: int, observer: LoadObserver | None = None
    ) -> None:
        self._operations = operations
        self.threads = threads
        # The pod-wide load, kept so /metrics can show that the budget holds (never more than
        # `threads` in flight) and that every worker is served (jobs per worker pid).
        self._load_lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.jobs_by_worker: dict[int, int] = {}
        self._observer = observer
        self._dir = tempfile.mkdtemp(prefix="phoenix-hash-")  # 0700
        self.path = os.path.join(self._dir, "hash.sock")
        # Jobs received and not yet done (queued + running), all workers': what a new login would
        # wait behind. Kept under _load_lock and mirrored into the shared page workers read.
        self.depth = 0
        self._page_file = open(os.path.join(self._dir, DEPTH_FILE), "w+b")  # noqa: SIM115 - lives with the server
        self._page_file.write(bytes(max(mmap.PAGESIZE, _PAGE.size)))
        self._page_file.flush()
        self._depth_page = mmap.mmap(self._page_file.fileno(), _PAGE.size)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # Jobs that must start by a time (`start_by`, time.monotonic(): one clock for the whole
        # pod), earliest first: the deadline thread answers those still queued then as late.
        self._deadlines: list[tuple[float, int, _Job]] = []
        self._deadline_cv = threading.Condition()
        self._deadline_seq = itertools.count()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(64)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._threads = [
            threading.Thread(target=self._hash_loop, name=f"hash-{i}", daemon=True) for i in range(threads)
        ]
        self._threads.append(threading.Thread(target=self._accept_loop, name="hash-accept", daemon=True))
        self._threads.append(threading.Thread(target=self._sweep_loop, name="hash-slots", daemon=True))
        self._threads.append(threading.Thread(target=self._deadline_loop, name="hash-late", daemon=True))
        for thread in self._threads:
            thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            lock = threading.Lock()
            self._connections.add(conn)
            worker = _peer_pid(conn)
            threading.Thread(
                target=self._read_loop, args=(conn, lock, worker), name="hash-conn", daemon=True
            ).start()

    def _read_loop(self, conn: socket.socket, lock: threading.Lock, worker: int) -> None:
        try:
            while not self._stopping.is_set():
                header = _recv_exact(conn, _HEADER.size)
                if header is None:
                    return
                (size,) = _HEADER.unpack(header)
                body = _recv_exact(conn, size) if size <= MAX_FRAME else None
                if body is None:
                    return
                job = _Job(conn, lock, worker, json.loads(body))
                self._queued(+1)
                start_by = job.request.get("start_by")
                if isinstance(start_by, int | float):
                    with self._deadline_cv:
                        heapq.heappush(self._deadlines, (float(start_by), next(self._deadline_seq), job))
                        self._deadline_cv.notify()
                self._jobs.put(job)
        except (OSError, ValueError):
            return
        finally:
            self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _hash_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._load_lock:
                if job.state == _Job.LATE:
                    continue  # answered by the deadline thread
                job.state = _Job.STARTED
            reply: dict[str, Any] = {"id": job.request.get("id")}
            self._run(job, reply)
            job.reply(reply)

    def _run(self, job: _Job, reply: dict[str, Any]) -> None:
        operation = self._operations.get(str(job.request.get("op")))
        self._count(+1, job.worker)
        try:
            if operation is None:
                raise ValueError(f"unknown operation {job.request.get('op')!r}")
            reply["result"] = operation(*job.request.get("args", ()))
        except ValueError as exc:
            reply["error"] = str(exc)
        except Exception:
            log.exception("hash operation failed")
            reply["error"] = "internal error"
        finally:
            self._count(-1, job.worker)
            self._queued(-1)

    def _deadline_loop(self) -> None:
        """Answer a job no thread has started by its `start_by` as late, at that time: its worker
        sheds the login then, not when a thread frees up (behind a slow legacy hash, much later)."""
        while not self._stopping.is_set():
            job = self._next_late()
            if job is not None:
                self._queued(-1)
                job.reply({"id": job.request.get("id"), "late": True})

    def _next_late(self) -> _Job | None:
        """Wait (at most 1 s) for the earliest deadline; the job it made late, if one did."""
        with self._deadline_cv:
            if not self._deadlines:
                self._deadline_cv.wait(1.0)
                return None
            start_by, _, job = self._deadlines[0]
            wait = start_by - time.monotonic()
            if wait > 0:
                self._deadline_cv.wait(min(wait, 1.0))
                return None
            heapq.heappop(self._deadlines)
        with self._load_lock:
            if job.state != _Job.QUEUED:
                return None
            job.state = _Job.LATE
        return job

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(1.0):
            self.sweep_slots()

    def sweep_slots(self) -> None:
        """Zero the slots no living worker holds: a worker that died with logins before their
        verify must not keep counting in every other worker's admission."""
        fd = self._page_file.fileno()
        for slot in range(SLOTS):
            if slot in _claimed:
                continue
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _slot_offset(slot))
            except OSError:
                continue  # a living worker's
            try:
                if _DEPTH.unpack_from(self._depth_page, _slot_offset(slot))[0]:
                    _DEPTH.pack_into(self._depth_page, _slot_offset(slot), 0)
            except ValueError:
                return  # closed: the server is stopping
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, _slot_offset(slot))

    def _queued(self, delta: int) -> None:
        with self._load_lock:
            self.depth += delta
            with contextlib.suppress(ValueError):  # closed: the server is stopping
                _DEPTH.pack_into(self._depth_page, 0, self.depth)

    def _count(self, delta: int, worker: int) -> None:
        with self._load_lock:
            self.in_flight += delta
            self.peak = max(self.peak, self.in_flight)
            if delta > 0:
                self.jobs_by_worker[worker] = self.jobs_by_worker.get(worker, 0) + 1
            in_flight, peak = self.in_flight, self.peak
        if self._observer is not None:
            with contextlib.suppress(Exception):  # metrics never fail a login
                self._observer(in_flight, peak, worker if delta > 0 else None)

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in list(self._connections):  # workers waiting on a reply hear EOF at once
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for _ in range(self.threads):
            self._jobs.put(None)
        with self._deadline_cv:
            self._deadline_cv.notify()
        shutil.rmtree(self._dir, ignore_errors=True)  # a worker's mapping outlives the file


class DepthGauge:
    """A worker's view of its hash server's queue, and its own slot in it.

    `waiting` is one read of the shared page: the jobs queued or running (all workers') plus
    every worker's admitted logins that have not submitted their verify yet. `publish` writes
    this worker's count to its slot. Without a slot (more than SLOTS workers) the caller's own
    count is added locally. If the page cannot be mapped (the server is gone or not started),
    only the local count is seen: admission lets the login through and its hash call answers
    503 OVERLOADED at once (HashServiceUnavailable).
    """

    def __init__(self, socket_path: str) -> None:
        self._page: mmap.mmap | None = None
        self.slot: int | None = None
        try:
            self._file = open(os.path.join(os.path.dirname(socket_path), DEPTH_FILE), "r+b")  # noqa: SIM115
            self._page = mmap.mmap(self._file.fileno(), _PAGE.size)
        except (OSError, ValueError):
            return
        for slot in range(SLOTS):
            if slot in _claimed:
                continue
            try:  # held until this process exits (POSIX record lock): the server never zeroes it
                fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _slot_offset(slot))
            except OSError:
                continue
            _claimed.add(slot)
            self.slot = slot
            self.publish(0)
            return

    def publish(self, count: int) -> None:
        """This worker's admitted logins that have not submitted their verify yet."""
        if self._page is not None and self.slot is not None:
            _DEPTH.pack_into(self._page, _slot_offset(self.slot), count)

    def waiting(self, own: int) -> int:
        """Jobs queued or running plus all workers' admitted logins not hashing yet (`own`:
        this worker's, counted here only when it has no slot)."""
        if self._page is None:
            return own
        depth, *slots = _PAGE.unpack_from(self._page, 0)
        total = max(0, int(depth)) + sum(int(n) for n in slots if n > 0)
        return total if self.slot is not None else total + own


# ----------------------------------------------------------------------------- worker side
class HashClient:
    """A worker's connection to its supervisor's HashServer; concurrent calls share it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()

    async def call(self, op: str, *args: Any, start_by: float | None = None) -> Any:
        """Run `op` on the hash service; HashStartedLate when no thread took it by `start_by`."""
        writer = await self._connect()
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        request: dict[str, Any] = {"id": request_id, "op": op, "args": list(args)}
        if start_by is not None:
            request["start_by"] = start_by
        try:
            writer.write(_pack(request))
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _connect(self) -> asyncio.StreamWriter:
        async with self._connecting:
            if self._writer is None or self._writer.is_closing():
                try:
                    reader, self._writer = await asyncio.open_unix_connection(self.path)
                except OSError as exc:
                    raise HashServiceUnavailable(f"hash service at {self.path}: {exc}") from exc
                self._reader_task = asyncio.create_task(self._read(reader))
            return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        error: BaseException = HashServiceUnavailable("the hash service closed the connection")
        try:
            while True:
                (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
                reply = json.loads(await reader.readexactly(size))
                future = self._pending.get(int(reply.get("id") or 0))
                if future is None or future.done():
                    continue
                if reply.get("late"):
                    future.set_exception(HashStartedLate())
                elif "error" in reply:
                    future.set_exception(ValueError(str(reply["error"])))
                else:
                    future.set_result(reply.get("result"))
        except (OSError, asyncio.IncompleteReadError) as exc:
            error = HashServiceUnavailable(f"the hash service connection failed: {exc}")
        finally:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            for future in list(self._pending.values()):
                if not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
