"""The pod's hashing budget: its size from the cgroup, and one FIFO queue that every worker shares."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from phoenix_auth.hashpool import DepthGauge, HashClient, HashServer, HashServiceUnavailable, cpu_budget

CPUS = len(os.sched_getaffinity(0))


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "100000 100000\n"}, 1),  # v2, limit 1 CPU
        ({"cpu.max": "150000 100000\n"}, 2),  # v2, 1.5 CPUs: rounded up
        ({"cpu.max": "25000 100000\n"}, 1),  # v2, 250m: at least one thread
        ({"cpu.max": "max 100000\n"}, CPUS),  # v2, no limit: the CPUs we may run on
        ({"cpu,cpuacct/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 1),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, CPUS),  # v1, no limit
        ({}, CPUS),  # no cgroup files at all
    ],
)
def test_cpu_budget_follows_the_cgroup_quota(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    assert cpu_budget(tmp_path) == min(expected, CPUS)


def test_hash_threads_default_to_the_budget_and_the_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from phoenix_auth.settings import Settings

    monkeypatch.delenv("PHOENIX_HASH_THREADS", raising=False)
    assert Settings().hash_threads == cpu_budget()
    monkeypatch.setenv("PHOENIX_HASH_THREADS", "3")
    assert Settings().hash_threads == 3


class _Recorder:
    """An operation that takes 20 ms and records how many ran at once and in which order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.order: list[str] = []

    def __call__(self, tag: str) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.order.append(tag)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        return tag


def test_all_workers_share_exactly_the_budget_in_arrival_order() -> None:
    recorder = _Recorder()
    server = HashServer({"work": recorder}, threads=2)

    async def main() -> dict[str, list[str]]:
        busy, quiet = HashClient(server.path), HashClient(server.path)  # two workers' connections

        async def calls(client: HashClient, tags: list[str]) -> list[str]:
            return list(await asyncio.gather(*(client.call("work", t) for t in tags)))

        try:
            first = asyncio.create_task(calls(busy, [f"busy-{i}" for i in range(10)]))
            await asyncio.sleep(0.05)
            middle = asyncio.create_task(calls(quiet, [f"quiet-{i}" for i in range(3)]))
            await asyncio.sleep(0.05)
            last = asyncio.create_task(calls(busy, [f"busy-{i}" for i in range(10, 20)]))
            return {"first": await first, "middle": await middle, "last": await last}
        finally:
            await busy.close()
            await quiet.close()

    try:
        results = asyncio.run(main())
    finally:
        server.close()
    assert recorder.peak == 2  # never more in flight than the pod's budget, whoever submits
    assert results["middle"] == ["quiet-0", "quiet-1", "quiet-2"]
    # One queue in arrival order: the quiet worker's jobs, sent while the busy one had 10 queued,
    # run before the busy worker's next 10 (its own pool would not make it wait at all, a pool
    # per worker on shared cores would let the busy side's backlog take the CPU).
    order = recorder.order
    assert max(order.index(f"quiet-{i}") for i in range(3)) < min(
        order.index(f"busy-{i}") for i in range(10, 20)
    )
    assert max(order.index(f"busy-{i}") for i in range(10)) < min(order.index(f"quiet-{i}") for i in range(3))


def test_errors_travel_back_and_a_gone_server_fails_fast() -> None:
    def refuse(_: str) -> None:
        raise ValueError("not a hash")

    server = HashServer({"refuse": refuse}, threads=1)

    async def main() -> None:
        client = HashClient(server.path)
        with pytest.raises(ValueError, match="not a hash"):
            await client.call("refuse", "x")
        with pytest.raises(ValueError, match="unknown operation"):
            await client.call("exec", "x")
        server.close()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(HashServiceUnavailable):
            await asyncio.wait_for(client.call("refuse", "x"), timeout=5)
        assert time.monotonic() - started < 1
        await client.close()

    asyncio.run(main())
    assert not Path(server.path).parent.exists()  # the socket's directory is removed


def test_a_worker_whose_hash_server_is_gone_answers_logins_503_overloaded_at_once() -> None:
    """A login on a worker whose supervisor's hash service went away is shed, never left hanging."""
    from phoenix_auth.errors import Overloaded
    from phoenix_auth.passwords import PasswordHasher
    from phoenix_auth.settings import Settings

    server = PasswordHasher(Settings(hash_threads=1))
    hash_server = HashServer(server.operations(), threads=1)
    worker = PasswordHasher(Settings(hash_socket=hash_server.path))
    stored = server.hash("correct horse battery staple")

    async def main() -> None:
        assert await worker.verify_async(stored, "correct horse battery staple")
        hash_server.close()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Overloaded) as caught:
            await asyncio.wait_for(worker.verify_async(stored, "correct horse battery staple"), timeout=5)
        assert caught.value.status == 503 and caught.value.code == "OVERLOADED"
        assert time.monotonic() - started < 1
        await worker.aclose()

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_every_worker_sees_the_servers_queue_and_every_workers_admitted_logins() -> None:
    """Admission (login.py) reads, with one read of the shared page beside the socket, how many
    jobs wait for or hold the server's threads (all workers') plus every worker's admitted
    logins that have not submitted their verify yet; a dead worker's slot is zeroed."""
    release = threading.Event()

    def slow(tag: str) -> str:
        release.wait(5)
        return tag

    server = HashServer({"slow": slow}, threads=1)
    gauge_a, gauge_b = DepthGauge(server.path), DepthGauge(server.path)  # two workers' views
    assert gauge_a.slot is not None and gauge_b.slot is not None and gauge_a.slot != gauge_b.slot
    assert gauge_a.waiting(0) == 0

    async def main() -> None:
        one, two = HashClient(server.path), HashClient(server.path)  # two workers' connections
        calls = [
            asyncio.ensure_future(c.call("slow", str(i))) for i, c in enumerate([one, two, two, one, two])
        ]
        for _ in range(200):
            if gauge_a.waiting(0) == 5:
                break
            await asyncio.sleep(0.01)
        assert server.depth == 5  # 1 running + 4 queued, from both workers
        gauge_b.publish(2)  # worker b admitted 2 logins that are still reading/looking up
        assert gauge_a.waiting(0) == gauge_b.waiting(2) == 7
        release.set()
        assert sorted(await asyncio.gather(*calls)) == ["0", "1", "2", "3", "4"]
        for _ in range(200):
            if gauge_a.waiting(0) == 2:
                break
            await asyncio.sleep(0.01)
        assert gauge_a.waiting(0) == 2
        await one.close()
        await two.close()

    try:
        asyncio.run(main())
        # Worker b dies with its 2 admitted logins counted: once its slot is free, the server
        # zeroes it (here: the slot is released as the lock of a dead process would be).
        _release_slot(gauge_b)
        server.sweep_slots()
        assert gauge_a.waiting(0) == 0
    finally:
        server.close()
    gone = DepthGauge(server.path)
    assert gone.slot is None and gone.waiting(3) == 3  # no server: only the worker's own count


def _release_slot(gauge: DepthGauge) -> None:
    """What the kernel does when a worker process dies: its lock on its slot's byte is gone."""
    import fcntl

    from phoenix_auth import hashpool

    assert gauge.slot is not None
    hashpool._claimed.discard(gauge.slot)
    fcntl.lockf(gauge._file.fileno(), fcntl.LOCK_UN, 1, hashpool._slot_offset(gauge.slot))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_verify_no_thread_started_in_time_is_shed_at_its_limit_and_never_runs(workers: int) -> None:
    """A login's verify may wait `start_within` seconds for a hashing thread (login.py
    `hash_wait_limit`). Behind a job far slower than admission's count of jobs assumes (a legacy
    bcrypt hash, a stall), it is answered 503 OVERLOADED at that limit, not when the thread frees
    up, and its hash never runs: with one worker its own pool, with several the pod's service."""
    from phoenix_auth.errors import Overloaded
    from phoenix_auth.passwords import PasswordHasher
    from phoenix_auth.settings import Settings

    password = "correct horse battery staple"
    pool = PasswordHasher(Settings(hash_threads=1))
    stored = pool.hash(password)
    hash_server = None
    if workers == 1:
        hasher = pool

        async def block() -> None:
            await asyncio.wrap_future(pool._executor.submit(time.sleep, 0.6))
    else:
        hash_server = HashServer({**pool.operations(), "block": time.sleep}, threads=1)
        hasher = PasswordHasher(Settings(hash_socket=hash_server.path))
        remote = hasher._remote
        assert remote is not None

        async def block() -> None:
            await remote.call("block", 0.6)

    async def main() -> None:
        assert (await hasher.check_async(stored, password, start_within=0.05)).ok  # a free thread
        runs = len(hasher._runs[hasher.current_kind])
        blocker = asyncio.create_task(block())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Overloaded) as caught:
            await hasher.check_async(stored, password, start_within=0.1)
        shed_after = time.monotonic() - started
        assert caught.value.status == 503 and caught.value.code == "OVERLOADED"
        assert 0.09 <= shed_after < 0.3, shed_after  # at its limit, not after the 0.6 s job
        await blocker
        assert len(hasher._runs[hasher.current_kind]) == runs  # the shed verify never ran
        assert (await hasher.check_async(stored, password, start_within=0.05)).ok
        await hasher.aclose()

    try:
        asyncio.run(main())
        if hash_server is not None:
            assert sum(hash_server.jobs_by_worker.values()) == 3  # the two verifies and the block
            assert hash_server.depth == 0  # the shed job left the queue's count once
    finally:
        pool.close()
        if hash_server is not None:
            hash_server.close()
