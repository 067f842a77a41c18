"""Helpers shared by every test folder: waiting until a condition holds, reading logs.

Import as ``from tests.helpers import eventually`` (pytest runs with
``--import-mode=importlib`` from the repository root, so ``tests`` is a
namespace package; helper modules that test folders put on ``sys.path``
import it the same way).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

DEFAULT_TIMEOUT = 30.0  # generous: two cores shared by many test runs
"""Seconds before a condition that never holds fails the test."""

Condition = Callable[[], object | Awaitable[object]]


async def eventually(
    condition: Condition,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = 0.005,
    in_thread: bool = False,
) -> None:
    """Wait until ``condition()`` is truthy; fail the test after ``timeout`` seconds.

    ``condition`` may be a plain function or return an awaitable (an ``async def``
    check). ``in_thread`` runs a blocking condition (an HTTP scrape, a process
    poll) in a worker thread, so the event loop keeps running the actors meanwhile.

    >>> asyncio.run(eventually(lambda: True))
    """
    deadline = time.monotonic() + timeout
    while not await _holds(condition, in_thread):
        if time.monotonic() > deadline:
            name = getattr(condition, "__name__", repr(condition))
            raise AssertionError(f"condition {name} not reached within {timeout} s")
        await asyncio.sleep(interval)


def wait_sync(condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT) -> None:
    """Blocking :func:`eventually`, for tests without an event loop."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            name = getattr(condition, "__name__", repr(condition))
            raise AssertionError(f"condition {name} not reached within {timeout} s")
        time.sleep(0.02)


async def _holds(condition: Condition, in_thread: bool) -> bool:
    result = await asyncio.to_thread(condition) if in_thread else condition()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def written_lines(path: Path) -> list[str]:
    """The complete lines of a log that other processes append to (none when it is missing):
    a line still being written, with no newline yet, is left for the next read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text[: text.rfind("\n") + 1].splitlines()
