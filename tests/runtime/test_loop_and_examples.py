"""uvloop selection and the quickstart example (the README's first command)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import troupe
from troupe.loop import uvloop_available


def test_run_uses_uvloop_when_installed() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = troupe.run(loop_module())
    assert module.startswith("uvloop") == uvloop_available()


def test_quickstart_example_runs_and_recovers_from_the_poisoned_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "troupe.examples.quickstart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "lines counted: 400 of 401" in result.stdout
    assert "restarts: 1" in result.stdout
    assert "counter-" in result.stderr and "poisoned line" in result.stderr
