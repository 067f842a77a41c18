"""A consumer process for the RabbitMQ kill -9 tests: ``python rabbitmq_effect_consumer.py
URL QUEUE DB [MAX_DELIVERIES]``. A message with a negative ``n`` kills the process.

Its target records every handling (``handled`` rows) and applies each message's
effect once: the effect row and its message id commit in one SQLite transaction
(``effects`` has the message id as primary key: the idempotency record lives with
the effect). It writes ``<DB>.ready`` once the bridge runs.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import troupe
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.message import ATTEMPT, MESSAGE_ID
from troupe.supervisors import Backoff


class Effect(Actor):
    def __init__(self, db: str) -> None:
        self.db = sqlite3.connect(db, timeout=10.0, isolation_level=None)

    async def receive(self, message: Any) -> None:
        if message["n"] < 0:  # poison: the handler kills its own process
            os._exit(3)
        await asyncio.sleep(0.002)  # some work: the kill lands mid-stream
        message_id = self.headers[MESSAGE_ID]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT INTO handled (id, attempt) VALUES (?, ?)", (message_id, self.headers[ATTEMPT])
        )
        self.db.execute(
            "INSERT OR IGNORE INTO effects (id, n) VALUES (?, ?)", (message_id, message["n"])
        )
        self.db.execute("COMMIT")


async def main(url: str, queue: str, db: str, max_deliveries: str = "50") -> None:
    broker = connect(url)
    async with ActorSystem("consumer") as system:
        target = system.spawn(Effect, db, name="effect")
        system.spawn(
            ConsumerBridge,
            broker,
            queue,
            "g",
            target,
            name="bridge",
            max_deliveries=int(max_deliveries),
            retry=Backoff(initial=0.05, maximum=0.5),
            block=0.1,
        )
        await asyncio.to_thread(Path(db + ".ready").write_text, "1")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:5]))
