"""An asyncio HTTP/1.1 keep-alive load generator, open-loop and closed-loop.

Why our own: httpx spends more CPU per request than the server under test, and on a 2-core
machine that CPU is taken from the server. This client writes pre-encoded request bytes and
parses only the status line and Content-Length (or chunked framing), which keeps it cheap.

Open loop (latency): request i is *intended* at t0 + i / rate whatever happened before. The
latency recorded is response end minus intended time, so a server stall shows up in every
request that should have been sent during the stall (coordinated-omission correction, as in
wrk2/HdrHistogram). The uncorrected service time (end minus actual send) is kept next to it.

Closed loop (throughput): each connection sends its next request as soon as the previous
response arrived; the result is completed requests per second.

It always runs in a process separate from the servers (the benchmark runner's process).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import LoadError

MAX_HEADER_BYTES = 64 * 1024
# Open loop at low rates: the event loop's timer wakes up to ~1 ms off the intended time (libuv
# timers have millisecond resolution), and that lateness lands in every corrected latency. Below
# SPIN_MAX_RATE the dispatcher sleeps until SPIN_S before the intended time, then yields to the
# loop (sleep(0), so responses are still read on time) until it is reached. Bounded cost: at most
# SPIN_S of CPU per request, i.e. <= 2 % of one core at SPIN_MAX_RATE; never at high rates, where
# it would take CPU from the servers under test on shared cores.
SPIN_S = 0.001
SPIN_MAX_RATE = 20.0


def encode_request(
    method: str,
    path: str,
    *,
    host: str = "127.0.0.1",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """The raw bytes of one keep-alive HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.1 response."""


@dataclass
class Response:
    status: int
    body: bytes
    keep_alive: bool
    server_timing: str | None = None  # the Server-Timing header, when the server sent one
    retry_after: float | None = None  # Retry-After in seconds, when the server sent one


class HttpConnection:
    """One persistent connection; requests on it are strictly sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(self, raw: bytes) -> Response:
        """Send one request; retried once on a fresh connection if an idle one was closed by the server."""
        reused = self._reader is not None
        try:
            return await self._request_once(raw)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
        return await self._request_once(raw)  # the server closed our idle keep-alive connection

    async def _request_once(self, raw: bytes) -> Response:
        reader, writer = await self._ensure()
        try:
            writer.write(raw)
            response = await read_response(reader)
        except BaseException:
            self.close()
            raise
        if not response.keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class ConnectionPool:
    """`size` keep-alive connections shared by any number of concurrent requests: each request
    takes the next idle connection from a FIFO queue (O(1), nothing spent per waiting request).

    For open loops whose requests depend on earlier answers (a soak that logs in and then checks
    the new session). httpx's pool matches every queued request against every connection on each
    change: after a 1-2 s stall of the server with a few hundred requests waiting, the client
    spent its whole core on that and never caught up (docs/reliability.md, "Load held")."""

    def __init__(self, host: str, port: int, size: int = 128, timeout: float = 10.0) -> None:
        self.host, self.timeout = host, timeout
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(HttpConnection(host, port))

    async def request(self, raw: bytes) -> Response:
        """One request (from `encode_request`) on the next idle connection; TimeoutError after
        `timeout` s, ConnectionError/HttpProtocolError as HttpConnection raises them."""
        conn = await self._idle.get()
        try:
            return await asyncio.wait_for(conn.request(raw), self.timeout)
        except BaseException:
            conn.close()
            raise
        finally:
            self._idle.put_nowait(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one response: status line, headers, then a Content-Length or chunked body."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("connection closed before a response") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpProtocolError("response headers too long") from exc
    status, headers = parse_head(head)
    keep_alive = headers.get("connection", "").lower() != "close"
    timing, retry_after = headers.get("server-timing"), _retry_after(headers)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return Response(status, b"".join(chunks), keep_alive, timing, retry_after)
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return Response(status, body, keep_alive, timing, retry_after)


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (status line + headers)."""
    if len(head) > MAX_HEADER_BYTES:
        raise HttpProtocolError("response headers too long")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpProtocolError(f"bad status line {lines[0]!r}")
    try:
        status = int(parts[1])
    except ValueError as exc:
        raise HttpProtocolError(f"bad status line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


@dataclass(frozen=True)
class Sample:
    """One request: when it was meant to go, when it went, when its response ended (monotonic s)."""

    intended: float
    sent: float
    done: float
    status: int  # 0: connection error or not completed before the deadline
    body: bytes | None = None
    index: int = -1  # position in the `requests` list of what was sent
    server_timing: str | None = None  # kept with the body (keep_bodies=True)
    queued: float | None = None  # open loop: when the dispatcher released it (lateness = queued - intended)


def corrected_latency(sample: Sample) -> float:
    """Latency including time spent waiting to be sent (coordinated-omission corrected).

    Measured from the intended send time, or from the actual send when that was earlier (event
    loop timers have 1 ms granularity and may fire a little early): never shorter than the
    request's own service time.
    """
    return sample.done - min(sample.intended, sample.sent)


def service_time(sample: Sample) -> float:
    """Latency from the moment the request was actually written (what a naive tool reports)."""
    return sample.done - sample.sent


def dispatch_lateness(sample: Sample) -> float | None:
    """How late the client itself released the request (timer granularity, its own CPU).

    Part of the corrected latency that is the load generator's, not the server's: published next
    to the latencies so a reader can see the harness's own floor.
    """
    return None if sample.queued is None else max(0.0, sample.queued - sample.intended)


def intended_times(rate: float, duration: float, t0: float = 0.0) -> list[float]:
    """Send schedule of an open-loop run: evenly spaced at `rate` per second for `duration` s."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    count = max(1, round(rate * duration))
    return [t0 + i / rate for i in range(count)]


@dataclass
class RunResult:
    """Everything one load run observed; summaries are computed by the caller."""

    mode: str  # "open" or "closed"
    offered_rate: float | None
    duration: float
    connections: int
    samples: list[Sample] = field(default_factory=list)
    unfinished: int = 0  # open loop: requests still queued or in flight at the deadline

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if 200 <= s.status < 300]

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not 200 <= s.status < 300) + self.unfinished

    def achieved_rate(self) -> float:
        """Successful responses per second over the run's span."""
        ok = self.ok
        if not ok:
            return 0.0
        start = min(s.intended for s in self.samples)
        end = max(s.done for s in ok)
        span = max(end - start, self.duration if self.mode == "closed" else 1e-9)
        return len(ok) / span


def _status_counts(samples: Sequence[Sample]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s in samples:
        counts[s.status] = counts.get(s.status, 0) + 1
    return counts


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    connections: int = 16,
    drain_timeout: float = 5.0,
    keep_bodies: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> RunResult:
    """Send `requests` (cycled) at a fixed rate; latency counted from each intended send time.

    Requests that have not completed `drain_timeout` s after the schedule ends are counted as
    `unfinished` (the server could not keep up): the run is always bounded in time.
    """
    if not requests:
        raise ValueError("open_loop needs at least one request")
    result = RunResult("open", rate, duration, connections)
    queue: asyncio.Queue[tuple[float, float, int]] = asyncio.Queue()
    t0 = clock() + 0.05
    schedule = intended_times(rate, duration, t0)

    async def worker() -> None:
        conn = HttpConnection(host, port)
        try:
            while True:
                intended, queued, index = await queue.get()
                sent = clock()
                try:
                    response = await conn.request(requests[index])
                    status, body, timing = response.status, response.body, response.server_timing
                except (OSError, HttpProtocolError, asyncio.IncompleteReadError, ValueError):
                    status, body, timing = 0, b"", None
                done = clock()
                if keep_bodies:
                    result.samples.append(Sample(intended, sent, done, status, body, index, timing, queued))
                else:
                    result.samples.append(Sample(intended, sent, done, status, None, index, None, queued))
                queue.task_done()
        finally:
            conn.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    try:
        spin = SPIN_S if rate <= SPIN_MAX_RATE else 0.0
        for i, intended in enumerate(schedule):
            # sleep(0) when behind still yields, so workers run even if the client is saturated
            await asyncio.sleep(max(0.0, intended - clock() - spin))
            while spin and clock() < intended:  # noqa: ASYNC110 - a bounded yielding spin, on purpose
                await asyncio.sleep(0)
            queue.put_nowait((intended, clock(), i % len(requests)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.join(), timeout=drain_timeout)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    result.unfinished = len(schedule) - len(result.samples)
    return result


async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    duration: float,
    connections: int = 16,
    keep_bodies: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    honour_retry_after: bool = True,
) -> RunResult:
    """Each connection sends back-to-back for `duration` s; measures throughput.

    Connection k walks the request list from its own offset, so connections do not send the
    same request at the same moment; `Sample.index` records what was sent. A 503 with
    Retry-After makes that connection wait that long before its next request, as HTTP clients
    (and Phoenix's TypeScript client) do; `honour_retry_after=False` is a client that busy-loops
    on 503s, whose retries take CPU from the server on shared cores.
    """
    if not requests:
        raise ValueError("closed_loop needs at least one request")
    result = RunResult("closed", None, duration, connections)
    deadline = clock() + duration

    async def worker(offset: int) -> None:
        conn = HttpConnection(host, port)
        index = offset % len(requests)
        try:
            while clock() < deadline:
                sent = clock()
                retry_after = None
                try:
                    response = await conn.request(requests[index])
                    status, body, timing = response.status, response.body, response.server_timing
                    retry_after = response.retry_after
                except (OSError, HttpProtocolError, asyncio.IncompleteReadError, ValueError):
                    status, body, timing = 0, b"", None
                    await asyncio.sleep(0.01)  # do not spin on a dead server
                done = clock()
                if keep_bodies:
                    result.samples.append(Sample(sent, sent, done, status, body, index, timing))
                else:
                    result.samples.append(Sample(sent, sent, done, status, None, index))
                index = (index + 1) % len(requests)
                if status == 503 and retry_after and honour_retry_after:
                    await asyncio.sleep(min(retry_after, max(0.0, deadline - clock())))
        finally:
            conn.close()

    stride = max(1, len(requests) // connections)
    tasks = [asyncio.create_task(worker(i * stride)) for i in range(connections)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30.0)
    except TimeoutError as exc:
        raise LoadError(f"closed-loop run did not finish within {duration + 30:.0f} s") from exc
    return result


def run(coro_factory: Callable[[], object]) -> RunResult:
    """Run one load coroutine on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop

        return uvloop.run(coro_factory())  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]


def status_summary(result: RunResult) -> dict[int, int]:
    """How many responses had each status (0 = transport error), for progress lines and JSON."""
    counts = _status_counts(result.samples)
    if result.unfinished:
        counts[-1] = result.unfinished
    return counts
