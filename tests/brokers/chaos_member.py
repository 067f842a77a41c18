"""A consumer group member for the chaos scenarios (``test_chaos.py``), on any broker.

``python chaos_member.py URL STREAM GROUP CONSUMER JOURNAL_DIR MAX_DELIVERIES SIDE_DIR``

Its target keeps the test's own side channel, files in ``SIDE_DIR`` appended with
one ``write`` each (a kill -9 cannot tear a line, and nothing the product counts is
used): every handler start appends ``<n> <attempt> <pid>`` to ``starts``, every
healthy message handled appends ``<n>`` to ``handled``. A payload with ``"poison"``
raises; one with ``"hang"`` hangs while the file ``SIDE_DIR/hang`` exists (until the
process is killed), then raises. The member writes ``SIDE_DIR/ready-<pid>`` once its
target started a message (or once its bridge holds partitions, on Kafka).

The same :class:`ChaosTarget` runs in-process for the memory broker (see the test).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import troupe
from troupe import Actor, ActorSystem, RestartPolicy
from troupe.backoff import Backoff
from troupe.brokers import Broker, ConsumerBridge, connect
from troupe.brokers.message import ATTEMPT

HANDLING = 0.015  # seconds per healthy message
#: The bridge options every member uses (in a process or in-process).
RETRY = Backoff(initial=0.01, maximum=0.05, jitter="none")
KAFKA_OPTIONS: dict[str, Any] = {"partitions": 2, "session_timeout": 1.0, "commit_interval": 0.1}


def bridge_options(max_deliveries: int, consumer: str) -> dict[str, Any]:
    """The ConsumerBridge options of a chaos member."""
    return {
        "consumer": consumer,
        "max_deliveries": max_deliveries,
        "max_broker_deliveries": max_deliveries + 3,  # a tight backstop: a crash loop tests it
        "retry": RETRY,
        "block": 0.05,
        "claim_idle": 0.3,
    }


def connect_member(url: str, journals: str | Path) -> Broker:
    """The broker of a member (Kafka: two partitions, a short session timeout)."""
    options = KAFKA_OPTIONS if url.startswith("kafka") else {}
    return connect(url, journal_dir=journals, **options)


def append(path: Path, line: str) -> None:
    """Append one line with a single write (O_APPEND): whole, or not at all."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class ChaosTarget(Actor):
    """Counts starts and handlings in the side channel (see the module docstring)."""

    restart_policy = RestartPolicy(
        max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.001)
    )

    def __init__(self, side: Path, ready: Path | None = None) -> None:
        self.side = side
        self.ready = ready

    async def receive(self, message: Any) -> None:
        n = message["n"]
        append(self.side / "starts", f"{n} {self.headers[ATTEMPT]} {os.getpid()}\n")
        if self.ready is not None:
            ready, self.ready = self.ready, None
            append(ready, "1")
        if message.get("hang"):
            while (self.side / "hang").exists():
                await asyncio.sleep(0.01)  # killed in the middle of this start
            raise RuntimeError(f"message {n} hung, then failed")
        if message.get("poison"):
            raise RuntimeError(f"message {n} is poison")
        await asyncio.sleep(HANDLING)
        append(self.side / "handled", f"{n}\n")


async def main(
    url: str, stream: str, group: str, consumer: str, journals: str, most: str, side: str
) -> None:
    broker = connect_member(url, journals)
    ready = Path(side) / f"ready-{os.getpid()}"
    async with ActorSystem("member") as system:
        target = system.spawn(ChaosTarget, Path(side), ready, name="target")
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            group,
            target,
            name="bridge",
            **bridge_options(int(most), consumer),
        )
        if url.startswith("kafka"):  # joined: it holds partitions (a plain counter)
            stats = broker.stats.consumer(stream, group, consumer)
            while not stats.partitions:
                await asyncio.sleep(0.01)
            append(ready, "1")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:8]))
