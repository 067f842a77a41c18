"""A Kafka consumer process for the kill -9 test.

``python kafka_effect_consumer.py KAFKA_URL REDIS_URL TOPIC GROUP JOURNAL_DIR [MAX_DELIVERIES]``

Its target records every handling in the Redis hash ``handled`` (message -> times
handled) and applies each message's effect (``effects``: message -> times applied)
once through the Redis idempotency store (effect and completion in one MULTI/EXEC).
A message with ``"exit"`` counts its start in ``starts`` and kills the process
(``os._exit``: no cleanup at all).
It sets ``ready:<pid>`` once its bridge has joined the group.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from redis.asyncio import Redis

import troupe
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.idempotency import ClaimState
from troupe.brokers.message import MESSAGE_ID
from troupe.brokers.redis.idempotency import RedisIdempotencyStore
from troupe.supervisors import Backoff

HANDLING = 0.004  # seconds per message


class Effect(Actor):
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.store = RedisIdempotencyStore(redis)

    async def receive(self, message: Any) -> None:
        n = str(message["n"])
        if message.get("exit"):
            await self.redis.hincrby("starts", n, 1)
            os._exit(3)
        await self.redis.hincrby("handled", n, 1)
        await asyncio.sleep(HANDLING)
        claim = await self.store.claim(self.headers[MESSAGE_ID], lease=1.0)
        if claim.state is ClaimState.DONE:
            return
        if claim.state is ClaimState.IN_PROGRESS:
            raise RuntimeError(f"message {n} is in progress elsewhere; retry later")
        assert claim.token is not None
        applied = await self.store.complete_with(
            self.headers[MESSAGE_ID],
            claim.token,
            b"ok",
            ttl=3600,
            effect=lambda pipe: pipe.hincrby("effects", n, 1),
        )
        if not applied:
            raise RuntimeError(f"lease on message {n} was lost; retry")


async def main(
    kafka_url: str,
    redis_url: str,
    topic: str,
    group: str,
    journals: str,
    max_deliveries: str = "50",
) -> None:
    broker = connect(kafka_url, session_timeout=1.0, commit_interval=0.5, journal_dir=journals)
    redis = Redis.from_url(redis_url)
    async with ActorSystem("consumer") as system:
        target = system.spawn(Effect, redis, name="effect")
        system.spawn(
            ConsumerBridge,
            broker,
            topic,
            group,
            target,
            name="bridge",
            consumer="worker",
            max_deliveries=int(max_deliveries),
            retry=Backoff(initial=0.05, maximum=0.5),
            block=0.1,
        )
        stats = broker.stats.consumer(topic, group, "worker")
        for _ in range(6000):  # until it joined the group (a plain counter: nothing to await)
            if stats.partitions:
                break
            await asyncio.sleep(0.01)
        await redis.set(f"ready:{os.getpid()}", 1)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:7]))
