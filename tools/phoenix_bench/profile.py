"""Optional py-spy sampling of the servers during a phase (`scripts/bench --profile`).

Where a table-2 target is missed, this says where the server's time went: py-spy samples every
worker (`--subprocesses`) without touching the code, and the collapsed stacks are summarised into
the functions with the most self time and the project functions with the most total time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def available() -> bool:
    return shutil.which("py-spy") is not None


@contextmanager
def record(pid: int, seconds: float, out: Path, result: dict[str, Any]) -> Iterator[None]:
    """Sample process `pid` and its children for `seconds` while the body runs; fill `result`."""
    cmd = [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield
    finally:
        try:
            _, err = proc.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if out.exists():
            result.update(summarize(out.read_text()))
            result["file"] = str(out)
        else:
            result["error"] = (err or "py-spy wrote nothing").strip()[-300:]


def summarize(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Top self-time frames and top project frames (inclusive) from py-spy's collapsed stacks."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_time[_short(frames[-1])] += count
        for frame in set(frames):
            if frame.startswith(("process ", "thread ")):
                continue
            if "phoenix_auth" in frame or "starlette" in frame or "uvicorn" in frame:
                inclusive[_short(frame)] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self": [(f, round(c / total, 4)) for f, c in self_time.most_common(top)],
        "inclusive_project": [(f, round(c / total, 4)) for f, c in inclusive.most_common(top)],
    }


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py:123)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name
