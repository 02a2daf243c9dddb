"""CPU time of processes from /proc, for benchmarks that divide a server's CPU by its work."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by `pid` alone; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and its living descendants (a server and its workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu_s(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


# The local control plane's processes by /proc/<pid>/comm (the kernel cuts names at 15 bytes).
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok")


def cpu_by_command(commands: tuple[str, ...] = CONTROL_PLANE) -> dict[str, float]:
    """CPU seconds used so far by every process whose command is one of `commands`, summed per
    command: what the control plane spent, for benchmarks that ask whose work a time waited on."""
    totals = dict.fromkeys(commands, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in totals:
            totals[comm] += cpu_s(int(entry.name))
    return totals


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds per command used since `before` (a `cpu_by_command` reading)."""
    now = cpu_by_command(tuple(before))
    return {name: round(now[name] - before[name], 1) for name in before}


def cpu_text(per_command: dict[str, float]) -> str:
    """A `cpu_since` reading for a progress line: `etcd 9.4, kube-apiserver 47.0, ...`."""
    return ", ".join(f"{name} {seconds:.1f}" for name, seconds in per_command.items())
