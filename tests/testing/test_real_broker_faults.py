"""The fault API in a real run: stream faults on a real Redis broker, actor crashes through
the handler hook and a broker restart; the delivery contract holds (every message handled,
nothing dead-lettered)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.helpers import eventually
from troupe import Actor, ActorSystem, Backoff, RestartPolicy
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.faults import inject_stream_faults
from troupe.brokers.servers import RedisServer
from troupe.brokers.servers.pytest_plugin import redis_server, redis_url  # noqa: F401
from troupe.testing import (
    Crash,
    Disconnect,
    Duplicate,
    FaultInjector,
    FaultPlan,
    Redeliver,
    Trace,
    no_message_lost,
)

SIZE = 30
TOLERANT = RestartPolicy(
    max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.01)
)


class Recorder(Actor):
    restart_policy = TOLERANT

    def __init__(self, handled: list[int]) -> None:
        self.handled = handled

    def receive(self, message: int) -> None:
        self.handled.append(message)


def test_stream_and_actor_faults_with_a_redis_restart(
    redis_server: RedisServer,  # noqa: F811
    redis_url: str,  # noqa: F811
) -> None:
    plan = FaultPlan(
        Duplicate("s-*", at=3),
        Redeliver("s-*", at=5),
        Disconnect("s-*", at=4),
        Crash("target", at=7),
        Crash("target", p=0.05),
    )
    trace = Trace()
    injector = FaultInjector(plan, seed=3, trace=trace)

    async def scenario() -> list[int]:
        broker = inject_stream_faults(connect(redis_url), injector)
        stream = f"s-{uuid.uuid4().hex}"
        handled: list[int] = []
        options: dict[str, Any] = {"block": 0.02, "claim_idle": 0.2, "max_deliveries": 50}
        async with ActorSystem(restart=TOLERANT, handler_hook=injector.hook) as system:
            target = system.spawn(Recorder, handled, name="target")
            system.spawn(ConsumerBridge, broker, stream, "g", target, **options)
            await broker.publish_messages(stream, [broker.message(i) for i in range(SIZE // 2)])
            await eventually(lambda: len(set(handled)) >= SIZE // 4)
            await asyncio.to_thread(redis_server.restart, 0.2)  # the broker goes away
            await broker.publish_messages(
                stream, [broker.message(i) for i in range(SIZE // 2, SIZE)]
            )

            async def drained() -> bool:
                return len(set(handled)) == SIZE and not await broker.pending(stream, "g")

            await eventually(drained)
            assert await broker.dead_letters(stream) == []
        await broker.close()
        return handled

    handled = asyncio.run(scenario())
    no_message_lost(range(SIZE), handled)
    fired = {e.kind for e in trace}
    assert {"duplicate", "lose-ack", "disconnect", "crash"} <= fired
    assert injector.injected["crash"] >= 1 and len(handled) > SIZE  # some came twice
