"""The in-memory broker and the consumer bridge inside the simulation: seeded deliveries with
duplicates, lost acks (redelivery), disconnects and target crashes keep the delivery contract."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings

from troupe import Actor, ActorSystem, Backoff, RestartPolicy
from troupe.brokers import ConsumerBridge
from troupe.brokers.faults import SimulatedBroker
from troupe.testing import (
    Crash,
    Disconnect,
    Duplicate,
    FaultPlan,
    Redeliver,
    Simulation,
    fault_plans,
    no_message_lost,
    seeds,
    simulate,
)

SIZE = 12
TOLERANT = RestartPolicy(
    max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.01)
)
OPTIONS: dict[str, Any] = {
    "retry": Backoff(initial=0.001, maximum=0.005, jitter="none"),
    "block": 0.02,
    "claim_idle": 0.1,
    "max_deliveries": 50,
    "drain_timeout": 0.05,
}


class Recorder(Actor):
    restart_policy = TOLERANT

    def __init__(self, handled: list[int], acked_early: list[str], broker: Any) -> None:
        self.handled = handled

    async def receive(self, message: int) -> None:
        await asyncio.sleep(0)
        self.handled.append(message)


async def deliver_all(sim: Simulation[Any]) -> dict[str, Any]:
    broker = SimulatedBroker()
    handled: list[int] = []
    async with ActorSystem("bridge", metrics=False, restart=TOLERANT) as system:
        target = system.spawn(Recorder, handled, [], broker, name="target")
        system.spawn(ConsumerBridge, broker, "s", "g", target, name="bridge", **OPTIONS)
        await broker.publish_messages("s", [broker.message(i) for i in range(SIZE)])
        while len(set(handled)) < SIZE or await broker.pending("s", "g"):
            await asyncio.sleep(0.01)
            assert sim.now < 120, f"{sorted(set(handled))} handled by t={sim.now:g}"
    no_message_lost(range(SIZE), handled)
    assert await broker.dead_letters("s") == []
    return {"handled": handled, "injected": dict(sim.injector.injected)}


PLANS = fault_plans(
    actors=["target"],
    streams=["s"],
    kinds=[Crash, Duplicate, Redeliver, Disconnect],
    max_faults=3,
    max_at=SIZE,
)


@settings(max_examples=25)
@given(seed=seeds(), plan=PLANS)
def test_bridge_delivers_everything_under_seeded_faults(seed: int, plan: FaultPlan) -> None:
    simulate(deliver_all, seed=seed, faults=plan)


def test_each_stream_fault_fires_and_is_survived() -> None:
    plan = FaultPlan(
        Duplicate("s", at=2), Redeliver("s", at=3), Disconnect("s", at=2), Crash("target", at=4)
    )
    run = simulate(deliver_all, seed=11, faults=plan)
    assert run.result is not None
    assert run.injector.injected == {"duplicate": 1, "redeliver": 1, "disconnect": 1, "crash": 1}
    handled = run.result["handled"]
    assert len(handled) > SIZE  # the duplicate, the lost ack and the crash each came again
    kinds = [e.kind for e in run.trace]
    assert {"duplicate", "lose-ack", "disconnect", "crash"} <= set(kinds)


def test_the_broker_run_is_deterministic() -> None:
    plan = FaultPlan(Duplicate("s", p=0.2), Crash("target", p=0.1))
    first = simulate(deliver_all, seed=5, faults=plan)
    second = simulate(deliver_all, seed=5, faults=plan)
    assert first.trace.lines() == second.trace.lines()
    assert first.result == second.result
