"""The examples in the docstrings and in the README run as written.

Every ```python block of README.md runs alone, in a fresh interpreter, as it
stands: a new block is covered without touching this file. The documentation
site's blocks (docs/) run in tests/docs/test_pages.py, their printed output
checked where the page shows it.
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
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_block_runs_alone(line: int, code: str, tmp_path: Path) -> None:
    done = run_block(code, tmp_path)
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stderr}"


def test_readme_example_prints_what_it_says(tmp_path: Path) -> None:
    (code,) = [code for _, code in BLOCKS if "class Counter(Actor)" in code]
    done = run_block(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3"]


def test_readme_stays_a_landing_page() -> None:
    """Under 200 lines, the two commands at the top, links into the site that exist."""
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert "pip install -e . && troupe demo" in text.split("##", 1)[0]
    assert "scripts/test" in text.split("##", 1)[0]
    links = re.findall(r"\]\((docs/[^)#]+)\)", text)
    assert links and all((README.parent / link).is_file() for link in links), links
