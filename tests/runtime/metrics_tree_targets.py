"""Actor trees the process-tree metrics tests run in real child processes.

Every process start handles exactly ``MESSAGES`` messages in an actor named
``counter``, so the tree's endpoint must report ``MESSAGES`` per start.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from troupe import Actor, ActorSystem

MESSAGES = 25


class Counter(Actor):
    """Tells itself MESSAGES messages when it starts, and handles them."""

    def __init__(self) -> None:
        self.handled = 0

    def on_start(self) -> None:
        for i in range(MESSAGES):
            self.ref.tell(i)

    def receive(self, message: Any) -> int:
        self.handled += 1
        return self.handled


def build(system: ActorSystem) -> None:
    """The ProcessSpec target."""
    system.spawn(Counter, name="counter")


async def _plain(name: str) -> None:
    async with ActorSystem(name) as system:
        build(system)
        assert await system.wait_idle(10)
        print("handled", flush=True)
        await asyncio.Event().wait()  # until killed


def main() -> None:
    """A plain child process (no supervisor): ``python -m metrics_tree_targets NAME``."""
    asyncio.run(_plain(sys.argv[1]))


if __name__ == "__main__":
    main()
