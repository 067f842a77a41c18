"""Small helpers shared by the tests of troupe.actors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from troupe import Actor


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (polling the loop); fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.001)


class Recorder(Actor):
    """Keeps every message it gets (in a list passed in, so it survives restarts)."""

    def __init__(self, seen: list[Any], fail_first: int = 0) -> None:
        self.seen = seen
        self.fail_first = fail_first

    def receive(self, message: Any) -> Any:
        if self.fail_first > 0 and len(self.seen) < self.fail_first:
            self.seen.append(("failed", message))
            raise RuntimeError(f"boom on {message!r}")
        self.seen.append(message)
        return message
