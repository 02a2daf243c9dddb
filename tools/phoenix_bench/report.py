"""Turning measured runs into the published numbers: medians over runs, markdown tables, machine facts.

Everything here is pure (no I/O besides reading /proc and writing the JSON file) so the table
layout and the median rule are unit-tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SEED_TABLE = {
    "auth_api": ("150-300 ms", "25-45 ms"),
    "db_query": ("50-100 ms", "5-15 ms"),
    "session": ("200-500 ms", "10-20 ms"),
    "cache_hit": ("85 %", "98 %"),
}


def median_tree(trees: Sequence[Any]) -> Any:
    """Median of several runs with the same shape: numbers by median, dicts by key, lists by index.

    Missing values (None) are ignored; a leaf missing in every run stays None; strings and other
    leaves are taken from the first run that has them. Booleans are not numbers here.
    """
    present = [t for t in trees if t is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, Mapping):
        keys: list[str] = []
        for t in present:
            keys += [k for k in t if k not in keys]
        return {k: median_tree([t.get(k) for t in present if isinstance(t, Mapping)]) for k in keys}
    if isinstance(first, list):
        length = max(len(t) for t in present)
        return [
            median_tree([t[i] for t in present if isinstance(t, list) and i < len(t)]) for i in range(length)
        ]
    if isinstance(first, int | float) and not isinstance(first, bool):
        nums = [t for t in present if isinstance(t, int | float) and not isinstance(t, bool)]
        return statistics.median(nums)
    return first


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; the first column left-aligned, the others right."""
    widths = [len(h) for h in headers]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, table has {len(headers)} columns")
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join([":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def fmt_ms(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "n/a"
    if digits is None:
        digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} ms"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}/s" if value >= 100 else f"{value:.1f}/s"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "**missed**"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU, memory, versions, date."""
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    pg = None
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    return {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1) if mem_kib else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql_client": pg,
        "loadavg_at_start": os.getloadavg(),
    }


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
