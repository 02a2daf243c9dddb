"""CPU readings from /proc that the benchmarks divide by their work."""

import time
from pathlib import Path

from phoenix_bench.proc import cpu_by_command, cpu_since


def test_cpu_by_command_counts_this_process_under_its_command():
    own = Path("/proc/self/comm").read_text().strip()
    before = cpu_by_command((own, "no-such-command"))
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    used = cpu_since(before)
    assert used[own] >= 0.2
    assert used["no-such-command"] == 0.0
