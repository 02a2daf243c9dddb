"""The cache-memory benchmark counts a server's workers, not only the process it started."""

import subprocess
import sys
import time

from phoenix_bench.cache_memory import table, tree_memory_mib


def test_tree_memory_counts_children() -> None:
    # A parent that starts a child holding 64 MiB: the tree's memory includes the child's.
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time; b = bytearray(64 * 2**20); time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        mib = 0.0
        while time.monotonic() < deadline and mib < 64:
            time.sleep(0.2)
            mib = tree_memory_mib(parent.pid)
        assert mib >= 64
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()


def test_table_gives_the_slope_per_user() -> None:
    result = {
        "workers": 1,
        "l1_max_entries": 100_000,
        "steps": [
            {"users": 0, "l1_entries": 0, "mib": 40.0},
            {"users": 1024, "l1_entries": 3072, "mib": 44.0},
        ],
    }
    assert "| 1,024 | 3072 | 44 | 4.00 |" in table(result)
