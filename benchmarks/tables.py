"""Render the docs' benchmark tables from the JSON the benchmark scripts wrote.

The figures on the documentation site are never typed by hand: a script's run is kept as
``benchmarks/published/<script>.json`` (written with ``--json``) and this script turns each
file into a Markdown table in ``docs/_snippets/benchmarks/<script>.md``, which the pages
include. ``tests/docs/test_benchmark_tables.py`` fails when a table and its JSON disagree.

    python benchmarks/actors.py --quick --json benchmarks/published/actors.json
    python benchmarks/tables.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "benchmarks" / "published"
SNIPPETS = ROOT / "docs" / "_snippets" / "benchmarks"

LOWER_IS_BETTER = {"bytes", "KiB", "ms", "us", "s"}


def ratio(troupe: float, peer: float, unit: str) -> str:
    """troupe's advantage over ``peer`` as ``1.23x`` (above 1: troupe is better)."""
    if troupe == 0 or peer == 0:
        return "n/a"
    value = peer / troupe if unit in LOWER_IS_BETTER else troupe / peer
    return f"{value:.2f}x"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def peer_cell(row: dict[str, Any], peer: str, value: float) -> str:
    paired = row.get("median_paired_ratio", {}).get(peer)
    shown = f"{paired:.2f}x" if paired is not None else ratio(row["troupe"], value, row["unit"])
    return f"{number(value)} ({shown})"


def render(result: dict[str, Any], source: str) -> str:
    """One Markdown table: a row per measurement, troupe's figure and each peer's with
    troupe's ratio to it (the median of the paired rounds' ratios when the script paired them)."""
    lines = [
        f"Printed by `{result.get('command', source)}` on "
        f"{result.get('date', 'an earlier day')}, Python {result['python']} "
        f"({result['machine']}); figures are medians of interleaved rounds, "
        "ratios are troupe / peer (above 1: troupe is better).",
        "",
        "| measurement | unit | troupe | peers: figure (troupe / peer) "
        "| CPU µs per message, each side |",
        "|---|---|---|---|---|",
    ]
    for row in result["results"]:
        peers = ", ".join(
            f"{peer} {peer_cell(row, peer, value)}" for peer, value in row["peers"].items()
        )
        cpu = row.get("cpu_us_per_msg_median", {})
        cpu_cell = ", ".join(f"{name} {value}" for name, value in cpu.items())
        lines.append(
            f"| {row['name']} | {row['unit']} | {number(row['troupe'])} | {peers} | {cpu_cell} |"
        )
    return "\n".join(lines) + "\n"


def tables() -> dict[Path, str]:
    """Each published result's table, by the snippet path it belongs in."""
    return {
        SNIPPETS / f"{path.stem}.md": render(json.loads(path.read_text()), path.name)
        for path in sorted(PUBLISHED.glob("*.json"))
    }


def main() -> None:
    SNIPPETS.mkdir(parents=True, exist_ok=True)
    for path, text in tables().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
