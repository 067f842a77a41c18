"""Helpers shared by the benchmark scripts: timing, argument parsing, JSON output."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def parse_args(description: str, rows: Sequence[str] = ()) -> argparse.Namespace:
    """The common flags: ``--quick`` (about 30 s) and ``--json PATH``; with ``rows``,
    ``--only ROW[,ROW...]`` too, and ``args.want(row)`` says whether to measure a row."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 30 s")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per measurement (actors.py: median; others: best)",
    )
    if rows:
        parser.add_argument(
            "--only", metavar="ROWS", help=f"comma-separated rows to measure: {', '.join(rows)}"
        )
    args = parser.parse_args()
    only = set(args.only.split(",")) if rows and args.only else None
    if only is not None and not only <= set(rows):
        parser.error(f"--only: unknown rows {sorted(only - set(rows))}; rows: {', '.join(rows)}")
    args.want = lambda row: only is None or row in only
    return args


def best_rate(run: Callable[[], float], count: int, repeat: int) -> float:
    """Run ``run`` (returns seconds for ``count`` operations) ``repeat`` times; best ops/s."""
    return max(count / run() for _ in range(repeat))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


class Report:
    """Collects result rows, prints them as a table with ratios, writes JSON."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.results: list[dict[str, Any]] = []

    def add(
        self, name: str, unit: str, troupe: float, peers: dict[str, float], **extra: Any
    ) -> None:
        row = {"name": name, "unit": unit, "troupe": troupe, "peers": peers, **extra}
        self.results.append(row)
        ratios = ", ".join(
            f"{peer} {value:,.0f} ({_ratio(troupe, value, unit)})" for peer, value in peers.items()
        )
        print(f"{name:<28} troupe {troupe:>12,.1f} {unit:<10} | {ratios}", flush=True)

    def write(self, path: str | None) -> None:
        if not path:
            return
        payload = {
            "benchmark": self.benchmark,
            "command": " ".join(["python", *sys.argv]),
            "date": time.strftime("%Y-%m-%d"),
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "results": self.results,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")


def _ratio(troupe: float, peer: float, unit: str) -> str:
    if peer == 0:
        return "n/a"
    lower_is_better = unit in {"bytes", "KiB", "ms", "us", "s"}
    ratio = peer / troupe if lower_is_better else troupe / peer
    return f"troupe {ratio:.2f}x"
