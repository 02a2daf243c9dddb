"""PNG of latency percentiles against offered load, naive vs Phoenix, for login and session checks.

Drawn from a results document (`results.json`, medians over runs); matplotlib is an optional
dependency (the `plot` extra of phoenix-dev-tools, in requirements-dev.lock), imported only here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt

STYLES = {
    "naive": ("tab:red", "naive (new connection, no index, no cache)"),
    "phoenix": ("tab:blue", "Phoenix"),
}
PERCENTILES = (("p50_ms", "-", "p50"), ("p99_ms", "--", "p99"))


def plot_latency(results: Mapping[str, Any], path: Path) -> Path:
    apps = (results.get("median") or {}).get("apps") or {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, kind, title in (
        (axes[0], "login", "Login (argon2id + lookup)"),
        (axes[1], "session", "Session validation"),
    ):
        for app, (color, label) in STYLES.items():
            points = [
                p
                for p in (apps.get(app) or {}).get(f"{kind}_sweep") or []
                if p and p.get("latency") and not p.get("skipped")
            ]
            if not points:
                continue
            xs = [p["offered_rate"] for p in points]
            for key, style, name in PERCENTILES:
                ax.plot(
                    xs,
                    [p["latency"][key] for p in points],
                    style,
                    marker="o",
                    color=color,
                    label=f"{label} {name}",
                )
        ax.set_title(title)
        ax.set_xlabel("offered load (requests/s, open loop)")
        ax.set_ylabel("latency (ms, coordinated-omission corrected)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    m = results.get("machine") or {}
    fig.suptitle(
        f"Phoenix vs naive — {m.get('nproc')} cores, {m.get('date_utc')}, "
        f"{len(results.get('runs') or [])} run(s), medians",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m phoenix_bench.plot results.json out.png`: redraw from saved results."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m phoenix_bench.plot RESULTS.json OUT.png", file=sys.stderr)
        return 2
    plot_latency(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
