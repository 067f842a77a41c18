"""A consumer group member for the chaos scenarios (``test_chaos.py``), on any broker.

``python chaos_member.py URL STREAM GROUP CONSUMER JOURNAL_DIR MAX_DELIVERIES SIDE_DIR``

Its target keeps the test's own side channel, files in ``SIDE_DIR`` appended with
one ``write`` each (a kill -9 cannot tear a line, and nothing the product counts is
used): every handler start appends ``<n> <attempt> <pid>`` to ``starts``, every
healthy message handled appends ``<n>`` to ``handled``. A payload with ``"poison"``
raises; one with ``"hang"`` hangs while the file ``SIDE_DIR/hang`` exists (until the
process is killed), then raises. The member writes ``SIDE_DIR/ready-<pid>`` once it
works (:func:`working`).

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
from troupe.brokers import Broker, ConsumerBridge, ConsumerStats, connect
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

    def __init__(self, side: Path) -> None:
        self.side = side

    async def receive(self, message: Any) -> None:
        n = message["n"]
        append(self.side / "starts", f"{n} {self.headers[ATTEMPT]} {os.getpid()}\n")
        if message.get("hang"):
            while (self.side / "hang").exists():  # noqa: ASYNC110 - a file the test removes
                await asyncio.sleep(0.01)  # killed in the middle of this start
            raise RuntimeError(f"message {n} hung, then failed")
        if message.get("poison"):
            raise RuntimeError(f"message {n} is poison")
        await asyncio.sleep(HANDLING)
        append(self.side / "handled", f"{n}\n")


async def working(stats: ConsumerStats) -> None:
    """Until the bridge works: a handler started or a message dead-lettered since the
    call, or (Kafka) it holds partitions. Plain counters: nothing to await."""
    started, dead = stats.started, stats.dead_lettered
    while stats.started == started and stats.dead_lettered == dead and not stats.partitions:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def main(
    url: str, stream: str, group: str, consumer: str, journals: str, most: str, side: str
) -> None:
    broker = connect_member(url, journals)
    async with ActorSystem("member") as system:
        target = system.spawn(ChaosTarget, Path(side), name="target")
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            group,
            target,
            name="bridge",
            **bridge_options(int(most), consumer),
        )
        await working(broker.stats.consumer(stream, group, consumer))
        append(Path(side) / f"ready-{os.getpid()}", "1")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:8]))
