"""A consumer process for the kill -9 test: ``python effect_consumer.py URL STREAM GROUP``.

Its target records every handling (``handled`` hash: message -> times handled)
and applies each message's effect (``effects`` hash: message -> times applied)
exactly once through the Redis idempotency store: the effect and the
completion commit in one MULTI/EXEC.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import troupe
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.idempotency import ClaimState
from troupe.brokers.message import MESSAGE_ID
from troupe.brokers.redis.broker import RedisBroker
from troupe.brokers.redis.idempotency import RedisIdempotencyStore
from troupe.supervisors import Backoff


class Effect(Actor):
    def __init__(self, broker: RedisBroker) -> None:
        self.redis = broker.client
        self.store = RedisIdempotencyStore(broker.client)

    async def receive(self, message: Any) -> None:
        n = str(message["n"])
        await self.redis.hincrby("handled", n, 1)
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


async def main(url: str, stream: str, group: str) -> None:
    broker = connect(url)
    assert isinstance(broker, RedisBroker)
    async with ActorSystem("consumer") as system:
        target = system.spawn(Effect, broker, name="effect")
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            group,
            target,
            name="bridge",
            claim_idle=1.0,
            max_deliveries=50,
            retry=Backoff(initial=0.05, maximum=0.5),
            block=0.1,
        )
        await broker.client.set("consumer-ready", 1)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    troupe.run(main(*sys.argv[1:4]))
