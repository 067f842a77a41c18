"""A small tour of the runtime on the embedded default (no server needed).

    python -m troupe.examples.quickstart

A word-count pipeline: a reader tells lines to a pool of counters, each
counter reports to an aggregator; ask collects the result. One counter
crashes on a poisoned line and is restarted with its mailbox intact.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from typing import Any

from troupe import Actor, ActorRef, ActorSystem, MailboxConfig, run

TEXT = """\
the actor model treats actors as the universal primitives of concurrent computation
in response to a message it receives an actor can make local decisions
create more actors send more messages and determine how to respond to the next message
actors may modify their own private state but can only affect each other through messages
"""


class Aggregator(Actor):
    """Sums the partial word counts it is told about."""

    def __init__(self) -> None:
        self.totals: Tally[str] = Tally()
        self.lines = 0

    def receive(self, message: Any) -> Any:
        if message == "result":
            return self.lines, self.totals.most_common(5)
        self.lines += 1
        self.totals.update(message)
        return None


class WordCounter(Actor):
    """Counts the words of one line at a time; a poisoned line crashes it."""

    mailbox = MailboxConfig(capacity=100, policy="backpressure")

    def __init__(self, aggregator: ActorRef) -> None:
        self.aggregator = aggregator

    async def receive(self, line: str) -> None:
        if line == "POISON":
            raise ValueError("poisoned line")
        await asyncio.sleep(0)  # pretend to do I/O
        await self.aggregator.tell(Tally(line.split()))


async def main() -> None:
    async with ActorSystem("quickstart") as system:
        aggregator = system.spawn(Aggregator, name="aggregator")
        counters = [system.spawn(WordCounter, aggregator, name=f"counter-{i}") for i in range(3)]
        lines = [line for line in TEXT.splitlines() if line] * 100
        lines.insert(len(lines) // 2, "POISON")
        for number, line in enumerate(lines):
            await counters[number % len(counters)].tell(line)
        await system.wait_idle()
        handled, top = await aggregator.ask("result")
        print(f"lines counted: {handled} of {len(lines)} (the poisoned one crashed a counter)")
        print(f"top words: {top}")
        print(f"failures: {system.failures}, restarts: {system.restarts}")
        print(f"dead letters: {system.dead_letters.count}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(main())
