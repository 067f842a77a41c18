"""The examples in the docstrings and in the README run as written.

Every ```python block of README.md runs alone, in a fresh interpreter, as it
stands: a new block is covered without touching this file. Blocks whose output
is part of the documentation are also checked line by line here or next to
their feature (tests/supervisors/test_readme_example.py).
"""

from __future__ import annotations

import doctest
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

MODULES = [
    "troupe.actors.bus",
    "troupe.actors.topics",
    "troupe.actors.retry",
    "troupe.actors.idempotency",
    "troupe.actors.saga_metrics",
    "troupe.actors.entities.metrics",
    "troupe.actors.entities.sharding",
    "troupe.brokers.state",
    "troupe.examples.orders.app",
    "troupe.cli",
    "troupe.metrics",
    "troupe.supervisors.process_metrics",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def readme_blocks() -> list[tuple[int, str]]:
    """``(line, code)`` of every python block in the README."""
    text = README.read_text()
    return [
        (text.count("\n", 0, found.start()) + 1, found.group(1))
        for found in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)
    ]


def run_block(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # a block that writes files writes them here
        capture_output=True,
        text=True,
        timeout=60,
    )


BLOCKS = readme_blocks()


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs_alone(line: int, code: str, tmp_path: Path) -> None:
    done = run_block(code, tmp_path)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stderr}"


def test_readme_saga_example_prints_what_it_says(tmp_path: Path) -> None:
    section = README.read_text().split("## The order-processing example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    done = run_block(code.group(1), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "o-1 completed None",
        "released o-2",
        "o-2 compensated card declined",
    ]


def test_readme_sync_example_prints_what_it_says(tmp_path: Path) -> None:
    (code,) = [code for _, code in BLOCKS if "SyncActorSystem(" in code]
    done = run_block(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3"]
