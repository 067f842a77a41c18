"""An orchestrator process for the multi-process saga tests.

``python saga_worker.py URL SAGAS LEASE LISTENER``: runs a ``SagaOrchestrator``
of saga ``trip`` (steps reserve → charge → ship) on a ``RedisSagaLog`` in
Redis at URL, asks it to start sagas ``s0``..``s{SAGAS-1}`` (every worker asks
for all of them: the log makes the extra starts duplicates), and runs until
killed. The steps' effects live in Redis: every call is counted in hash
``calls``; ``charge`` fails the first ``FAIL_FIRST`` calls per saga; an applied
action is recorded once in hash ``applied`` (idempotent by saga id, like a
payment API with an idempotency key) and every action and compensation is
appended to list ``events``. The listener appends ``saga_id:status`` to list
``outcomes`` (LISTENER ``hang``: it never returns, so nothing is acknowledged).
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from redis.asyncio import Redis

from troupe import Actor, ActorSystem
from troupe.actors.retry import Retry
from troupe.actors.saga import SagaDefinition, SagaFinished, SagaOrchestrator, SagaStep, StartSaga
from troupe.actors.saga import Step as SagaStepSpec
from troupe.actors.saga_log_redis import RedisSagaLog
from troupe.supervisors import Backoff, ChildSpec, SupervisorSpec, start_supervisor

FAIL_FIRST = 2
# the effect and its record in one atomic step: applied once per saga and step
APPLY = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
"""
UNDO = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
"""
STEPS = ("reserve", "charge", "ship")


class Effect(SagaStep):
    def __init__(self, client: Redis, step: str) -> None:
        self.client = client
        self.step = step

    async def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(random.uniform(0, 0.005))  # sagas overlap in every process
        calls = await self.client.hincrby("calls", f"{saga_id}:{self.step}", 1)
        if self.step == "charge" and calls <= FAIL_FIRST:
            raise ConnectionError(f"payment API down (call {calls})")
        await self.client.eval(APPLY, 2, "applied", "events", f"{saga_id}:{self.step}",
                               f"do {saga_id} {self.step}")  # fmt: skip
        return {self.step: "ok"}

    async def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        await self.client.eval(UNDO, 2, "applied", "events", f"{saga_id}:{self.step}",
                               f"undo {saga_id} {self.step}")  # fmt: skip


class Listener(Actor):
    def __init__(self, client: Redis, hang: bool) -> None:
        self.client = client
        self.hang = hang

    async def receive(self, message: SagaFinished) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        await self.client.rpush("outcomes", f"{message.saga_id}:{message.status.value}")


def trip() -> SagaDefinition:
    retry = Retry(max_attempts=FAIL_FIRST + 1, initial=0.005, maximum=0.02)
    return SagaDefinition(
        "trip",
        tuple(SagaStepSpec(s, f"step-{s}", timeout=5.0, retry=retry) for s in STEPS),
        compensation_retry=Retry(max_attempts=10, initial=0.005, maximum=0.05),
    )


async def main(url: str, sagas: int, lease: float, listener: str) -> None:
    client = Redis.from_url(url)
    async with ActorSystem("worker") as system:
        steps = SupervisorSpec(  # a failing call fails the step actor: restart it, always
            [ChildSpec(Effect, (client, step), name=f"step-{step}") for step in STEPS],
            name="steps",
            max_restarts=1_000_000,
            within=1.0,
            backoff=Backoff(initial=0.001, maximum=0.01, jitter="full"),
        )
        await start_supervisor(system, steps)
        system.spawn(Listener, client, listener == "hang", name="listener")
        orchestrator = system.spawn(
            SagaOrchestrator, trip(), RedisSagaLog(client), listener="listener", lease=lease
        )
        ids = [f"s{n}" for n in range(sagas)]
        random.shuffle(ids)
        for saga_id in ids:
            await orchestrator.ask(StartSaga(saga_id, {}), timeout=30)
        await client.rpush("workers", "started all")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]))
