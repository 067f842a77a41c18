"""The examples in the docstrings and in the README section run as written."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import re
from pathlib import Path

import pytest

MODULES = [
    "troupe.actors.bus",
    "troupe.actors.topics",
    "troupe.actors.retry",
    "troupe.actors.idempotency",
    "troupe.actors.saga_metrics",
    "troupe.examples.orders.app",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0


def test_readme_saga_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## The order-processing example") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == [
        "o-1 completed None",
        "released o-2",
        "o-2 compensated card declined",
    ]
