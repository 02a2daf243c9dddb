"""Closed-loop throughput with `wrk` (C, far cheaper per request than any Python client).

On a 2-core machine the load generator's CPU is taken from the server, so for throughput runs
we prefer wrk when it is installed. Request variety (Zipf-mixed tokens or login bodies) comes
from a generated Lua script that cycles through a precomputed sequence of requests. The pure
parts (script text, output parsing) are unit-tested; `run_wrk` only runs the binary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import LoadError

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    non_2xx: int
    socket_errors: int
    latency_ms: dict[str, float]  # "50", "75", "90", "99" -> ms

    @property
    def ok_per_s(self) -> float:
        """Successful responses per second (errors do not count as throughput)."""
        ok = max(self.requests - self.non_2xx - self.socket_errors, 0)
        return ok / self.seconds if self.seconds else 0.0


def lua_string(value: str) -> str:
    """A Lua double-quoted string literal for any text."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) > 126:
            out.append("".join(f"\\{b:03d}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def lua_script(requests: Sequence[WrkRequest], sequence: Sequence[int]) -> str:
    """A wrk script that sends requests[sequence[0]], requests[sequence[1]], ... in a cycle."""
    if not requests or not sequence:
        raise ValueError("wrk script needs requests and a sequence")
    if max(sequence) >= len(requests) or min(sequence) < 0:
        raise ValueError("sequence refers to a request that does not exist")
    rows = []
    for r in requests:
        headers = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in r.headers)
        body = lua_string(r.body) if r.body else "nil"
        rows.append(f"  {{{lua_string(r.method)}, {lua_string(r.path)}, {{{headers}}}, {body}}},")
    seq = ",".join(str(i + 1) for i in sequence)
    return (
        "local specs = {\n" + "\n".join(rows) + "\n}\n"
        f"local seq = {{{seq}}}\n"
        "local reqs = {}\n"
        "local n = 0\n"
        "function init(args)\n"
        "  for i, s in ipairs(specs) do reqs[i] = wrk.format(s[1], s[2], s[3], s[4]) end\n"
        "  n = math.random(#seq) - 1\n"
        "end\n"
        "function request()\n"
        "  n = n % #seq + 1\n"
        "  return reqs[seq[n]]\n"
        "end\n"
    )


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unknown wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_output(text: str) -> WrkResult:
    """Parse `wrk --latency` output; raises LoadError when it does not look like a wrk report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not total or not rps:
        raise LoadError("wrk printed no result:\n" + text[-2000:])
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    latency = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", text, re.M)}
    return WrkResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000.0,
        requests_per_s=float(rps.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        latency_ms=latency,
    )


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    requests: Sequence[WrkRequest],
    sequence: Sequence[int],
    *,
    duration: float,
    connections: int,
    threads: int = 1,
) -> WrkResult:
    """Run wrk closed-loop against `url` for `duration` s (bounded: killed after duration + 30 s)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise LoadError("wrk is not installed (apt-get install wrk), or use --client python")
    with tempfile.TemporaryDirectory(prefix="phoenix-wrk-") as tmp:
        script = Path(tmp) / "mix.lua"
        script.write_text(lua_script(requests, sequence))
        cmd = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wrk did not finish within {duration + 30:.0f} s") from exc
    if proc.returncode != 0:
        raise LoadError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return parse_output(proc.stdout)
