"""The load generator: HTTP framing, the open-loop schedule and coordinated-omission correction."""

import asyncio
import contextlib
import time

import pytest

from phoenix_bench import loadgen
from phoenix_bench.loadgen import Sample, corrected_latency, intended_times, parse_head, service_time


def test_encode_request_has_length_and_host():
    raw = loadgen.encode_request(
        "POST", "/api/auth/login", headers=(("Content-Type", "application/json"),), body=b"{}"
    )
    assert raw.startswith(b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert b"Content-Length: 2\r\n\r\n{}" in raw
    assert b"Content-Length" not in loadgen.encode_request("GET", "/noop")


def test_parse_head_reads_status_and_headers():
    status, headers = parse_head(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    )
    assert status == 401
    assert headers == {"content-length": "5", "connection": "close"}
    with pytest.raises(loadgen.HttpProtocolError):
        parse_head(b"garbage\r\n\r\n")


async def test_read_response_content_length_and_chunked():
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    reader.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    first = await loadgen.read_response(reader)
    second = await loadgen.read_response(reader)
    assert (first.status, first.body, first.keep_alive) == (200, b"ok", True)
    assert second.body == b"abcde"


def test_intended_times_are_evenly_spaced_at_the_rate():
    times = intended_times(100.0, 2.0, t0=10.0)
    assert len(times) == 200
    assert times[0] == 10.0
    assert times[1] - times[0] == pytest.approx(0.01)
    with pytest.raises(ValueError):
        intended_times(0, 1)


def test_corrected_latency_counts_the_wait_before_sending():
    # the request was due at t=1.0, but a stalled connection only sent it at t=1.5
    s = Sample(intended=1.0, sent=1.5, done=1.502, status=200)
    assert service_time(s) == pytest.approx(0.002)
    assert corrected_latency(s) == pytest.approx(0.502)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _server(handler_delay, response=OK):
    """A tiny keep-alive HTTP server; handler_delay(n) is the delay of the n-th request, each
    answered with `response`."""
    count = 0

    async def handle(reader, writer):
        nonlocal count
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                count += 1
                await asyncio.sleep(handler_delay(count))
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_open_loop_sees_a_stall_that_closed_loop_timing_hides():
    # request 5 stalls 300 ms on the only connection: every request due meanwhile waits for it
    server, port = await _server(lambda n: 0.3 if n == 5 else 0.0)
    async with server:
        result = await loadgen.open_loop(
            "127.0.0.1", port, [loadgen.encode_request("GET", "/")], rate=100, duration=1.0, connections=1
        )
    ok = result.ok
    assert len(ok) == 100 and result.unfinished == 0
    corrected = sorted(corrected_latency(s) for s in ok)
    service = sorted(service_time(s) for s in ok)
    # ~30 requests were due during the stall: the corrected p90 shows it, service time does not
    assert corrected[89] > 0.05
    assert service[89] < 0.05
    assert result.achieved_rate() == pytest.approx(100, rel=0.3)


async def test_open_loop_is_bounded_when_the_server_cannot_keep_up():
    server, port = await _server(lambda n: 0.2)
    async with server:
        result = await loadgen.open_loop(
            "127.0.0.1",
            port,
            [loadgen.encode_request("GET", "/")],
            rate=50,
            duration=0.5,
            connections=2,
            drain_timeout=0.3,
        )
    assert result.unfinished > 0
    assert result.errors >= result.unfinished


async def test_closed_loop_counts_throughput_and_connection_errors():
    server, port = await _server(lambda n: 0.0)
    async with server:
        result = await loadgen.closed_loop(
            "127.0.0.1", port, [loadgen.encode_request("GET", "/")], duration=0.3, connections=2
        )
    assert len(result.ok) > 10
    # nothing listens on a closed port: errors, not an exception, and the run still ends
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    result = await loadgen.closed_loop(
        "127.0.0.1", dead, [b"GET / HTTP/1.1\r\n\r\n"], duration=0.1, connections=1
    )
    assert result.ok == [] and result.errors > 0


async def test_closed_loop_waits_the_retry_after_of_a_503_unless_told_to_busy_loop():
    """A shed login (503 OVERLOADED + Retry-After) is retried after the wait the server asked
    for, as HTTP clients do; a busy-looping client sends hundreds meanwhile."""

    shed = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"
    server, port = await _server(lambda n: 0.0, shed)
    request = [loadgen.encode_request("GET", "/")]
    async with server:
        polite = await loadgen.closed_loop("127.0.0.1", port, request, duration=0.5, connections=2)
        busy = await loadgen.closed_loop(
            "127.0.0.1", port, request, duration=0.5, connections=2, honour_retry_after=False
        )
    assert len(polite.samples) == 2 and {s.status for s in polite.samples} == {503}
    assert len(busy.samples) > 20


async def test_open_loop_records_how_late_the_client_itself_was():
    server, port = await _server(lambda n: 0.0)
    async with server:
        result = await loadgen.open_loop(
            "127.0.0.1", port, [loadgen.encode_request("GET", "/")], rate=200, duration=0.5, connections=4
        )
    lateness = [loadgen.dispatch_lateness(s) for s in result.samples]
    assert all(v is not None and v >= 0 for v in lateness)
    # an idle client releases requests close to their schedule (generous bound for a busy CI box)
    assert sorted(lateness)[len(lateness) // 2] < 0.05
    assert loadgen.dispatch_lateness(Sample(1.0, 1.0, 1.1, 200)) is None


def test_a_request_sent_early_is_timed_from_its_send():
    s = Sample(intended=1.0, sent=0.9995, done=1.0015, status=200)
    assert corrected_latency(s) == pytest.approx(0.002)


async def test_open_loop_at_a_low_rate_never_releases_a_request_before_its_time():
    # below SPIN_MAX_RATE the dispatcher finishes each wait by yielding, not on a ms-granular timer,
    # which can fire early: no request goes before its intended time (its latency is then exact)
    server, port = await _server(lambda n: 0.0)
    async with server:
        result = await loadgen.open_loop(
            "127.0.0.1", port, [loadgen.encode_request("GET", "/")], rate=10, duration=0.6, connections=2
        )
    assert len(result.ok) == 6
    assert all(s.queued is not None and s.queued >= s.intended for s in result.samples)
    assert all(s.sent >= s.intended for s in result.samples)


async def test_connection_pool_shares_its_connections_among_any_number_of_waiting_requests(monkeypatch):
    """2,000 requests at once on 8 connections, the server stalling 300 ms on one: every request is
    answered and no more than 8 connections are opened; the backlog costs the client nothing per
    waiting request (the batch takes the stall plus 2,000 quick answers: ~1 s here)."""
    opened = 0
    original = asyncio.open_connection

    async def counting(*args, **kwargs):
        nonlocal opened
        opened += 1
        return await original(*args, **kwargs)

    server, port = await _server(lambda n: 0.3 if n == 5 else 0.0)
    monkeypatch.setattr(asyncio, "open_connection", counting)
    raw = loadgen.encode_request("GET", "/")
    async with server:
        pool = loadgen.ConnectionPool("127.0.0.1", port, size=8, timeout=5)
        try:
            started = time.monotonic()
            answers = await asyncio.gather(*(pool.request(raw) for _ in range(2000)))
            elapsed = time.monotonic() - started
        finally:
            pool.close()
    assert [a.status for a in answers] == [200] * 2000
    assert opened == 8
    assert elapsed < 10.0, elapsed


async def test_connection_pool_times_out_a_request_and_gives_its_slot_to_the_next():
    server, port = await _server(lambda n: 10.0 if n == 1 else 0.0)
    raw = loadgen.encode_request("GET", "/")
    async with server:
        pool = loadgen.ConnectionPool("127.0.0.1", port, size=1, timeout=0.2)
        try:
            with pytest.raises(TimeoutError):
                await pool.request(raw)
            assert (await pool.request(raw)).status == 200  # on a fresh connection
        finally:
            pool.close()
