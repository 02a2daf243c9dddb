"""`phoenix-operator` leaves promptly even when a sync handler thread is still blocked after Kopf
stopped (the interpreter would otherwise join that thread at exit, past the pod's grace period)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from phoenix_operator.cli import exit_now_if_threads_hang

    if sys.argv[1] == "blocked":
        threading.Thread(target=time.sleep, args=(60,), name="handler").start()  # non-daemon
    print("work done", flush=True)
    exit_now_if_threads_hang(3)
    sys.exit(3)
    """
)


def run(mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=30, check=False
    )
    return result, time.monotonic() - started


def test_a_blocked_handler_thread_does_not_hold_the_exit() -> None:
    result, elapsed = run("blocked")
    assert elapsed < 10, f"exit took {elapsed:.1f} s"
    assert result.returncode == 3
    assert "work done" in result.stdout
    assert "still blocked" in result.stderr


def test_without_blocked_threads_the_normal_exit_path_runs() -> None:
    result, elapsed = run("idle")
    assert elapsed < 10
    assert result.returncode == 3
    assert "still blocked" not in result.stderr
