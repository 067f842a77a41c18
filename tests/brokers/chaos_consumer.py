"""A consumer process for the crash tests.

``python chaos_consumer.py URL STREAM GROUP CONSUMER JOURNAL_DIR MAX_DELIVERIES``

Its target counts every handler start in the hash ``starts`` (message -> starts;
for poison ones it also logs ``pid, troupe-attempt`` in the list ``log:<n>``),
then: a payload with ``"poison"`` always raises; one with ``"exit"`` kills the
process with ``os._exit`` (no cleanup at all); any other sleeps a few
milliseconds and counts the handling in ``handled``. It sets ``ready:<pid>``
once its bridge runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import troupe
from troupe import Actor, ActorSystem, RestartPolicy
from troupe.backoff import Backoff
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.message import ATTEMPT
from troupe.brokers.redis.broker import RedisBroker

HANDLING = 0.003  # seconds per healthy message


class Target(Actor):
    restart_policy = RestartPolicy(
        max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.001)
    )

    def __init__(self, broker: RedisBroker) -> None:
        self.redis = broker.client

    async def receive(self, message: Any) -> None:
        n = str(message["n"])
        await self.redis.hincrby("starts", n, 1)
        if message.get("poison") or message.get("exit"):  # the story, for failure messages
            attempt = self.headers[ATTEMPT]
            await self.redis.rpush(f"log:{n}", f"pid {os.getpid()} attempt {attempt}")
        if message.get("poison"):
            raise RuntimeError(f"message {n} is poison")
        if message.get("exit"):
            os._exit(3)
        await asyncio.sleep(HANDLING)
        await self.redis.hincrby("handled", n, 1)


async def main(url: str, stream: str, group: str, consumer: str, journals: str, most: str) -> None:
    broker = connect(url, journal_dir=journals)
    assert isinstance(broker, RedisBroker)
    async with ActorSystem("consumer") as system:
        target = system.spawn(Target, broker, name="target")
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            group,
            target,
            name="bridge",
            consumer=consumer,
            claim_idle=0.3,
            max_deliveries=int(most),
            retry=Backoff(initial=0.01, maximum=0.05),
            block=0.05,
        )
        await broker.client.set(f"ready:{os.getpid()}", 1)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:7]))
