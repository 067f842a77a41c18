"""Properties of the delivery contract under random handler failures and bridge stops:
graceful ones (restart in place, stop and replace) and abrupt ones (killed without a drain,
then replaced under the same or a new consumer name). The same scenario runs against each
real broker and, on troupe.testing's simulated loop, on ``SimulatedBroker`` with seeded
interleavings and drawn stream faults (duplicates, lost acks, disconnects)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.brokers.helpers import TOLERANT
from troupe import Actor, ActorSystem
from troupe.brokers import Broker, ConsumerBridge, ConsumerSession, connect
from troupe.brokers.faults import SimulatedBroker
from troupe.brokers.message import ENTRY_ID
from troupe.supervisors import Backoff
from troupe.testing import Disconnect, Duplicate, FaultPlan, Redeliver, fault_plans, seeds, simulate

FAST = Backoff(initial=0.001, maximum=0.005, jitter="none")
PATIENCE = 60.0
"""Seconds a wait of the scenario may take: the products' own bound, not a guess. A Kafka
bridge that replaces a killed member (or joins a group a member of an earlier example left
without a leave) gets its partitions after that member's ``session_timeout`` (10 s) and a
rebalance, within ``join_timeout`` (60 s); on a busy machine that took 19 s."""


class Flaky(Actor):
    """Fails message n ``plan[n]`` times, records each successful handling by entry id."""

    def __init__(self, plan: dict[int, int], handled: set[str], counts: dict[int, int]) -> None:
        self.plan = plan
        self.handled = handled
        self.counts = counts

    async def receive(self, message: int) -> None:
        await asyncio.sleep(0)
        if self.plan.get(message, 0) > 0:
            self.plan[message] -= 1
            raise RuntimeError(f"planned failure of {message}")
        self.handled.add(self.headers[ENTRY_ID])
        self.counts[message] = self.counts.get(message, 0) + 1


faults = st.fixed_dictionaries(
    {
        "size": st.integers(min_value=1, max_value=40),
        "failures": st.dictionaries(st.integers(0, 39), st.integers(1, 2), max_size=8),
        "crashes": st.lists(
            st.tuples(
                st.integers(0, 40), st.sampled_from(["restart", "replace", "kill", "kill-same"])
            ),
            max_size=3,
        ),
    }
)


async def contract(
    broker: Broker, stream: str, case: dict[str, Any], now: Callable[[], float]
) -> None:
    """Bridges restart in place (own pending resumed), are replaced by a new consumer (idle
    pending claimed), or are killed without a drain and replaced (under a new name or the
    same one) at random points; handler failures come on top. Every message is handled,
    none is acked before its handler returned, none is dead-lettered. ``now`` tells the
    time the waits are bounded by (real or virtual)."""
    handled: set[str] = set()
    counts: dict[int, int] = {}
    early_acks: list[str] = []
    real_consume = broker.consume

    async def consume(*args: Any, **kwargs: Any) -> ConsumerSession:
        session = await real_consume(*args, **kwargs)
        real_ack = session.ack

        async def checked_ack(deliveries: Any) -> None:
            early_acks.extend(d.entry_id for d in deliveries if d.entry_id not in handled)
            await real_ack(deliveries)

        session.ack = checked_ack  # type: ignore[method-assign]
        return session

    broker.consume = consume  # type: ignore[method-assign]
    size = case["size"]
    group = f"g-{stream}"  # a group per example: no member of an earlier example lingers in it
    options: dict[str, Any] = {
        "retry": FAST,
        "block": 0.02,
        "claim_idle": 0.1,
        "max_deliveries": 50,
        "drain_timeout": 0.05,
    }
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Flaky, dict(case["failures"]), handled, counts)
        bridge = system.spawn(ConsumerBridge, broker, stream, group, target, **options)
        await broker.publish_messages(stream, [broker.message(i) for i in range(size)])
        for after, how in sorted(case["crashes"]):
            deadline = now() + PATIENCE
            while len(counts) < min(after, size):
                assert now() < deadline, f"{len(counts)}/{min(after, size)} handled before {how}"
                await asyncio.sleep(0.002)
            if how == "restart":
                system.cell_of(bridge).restart()
            elif how == "replace":
                await bridge.stop()
                bridge = system.spawn(ConsumerBridge, broker, stream, group, target, **options)
            else:  # abrupt: no drain, nothing more acked by it
                name = system.cell_of(bridge).actor.consumer  # type: ignore[attr-defined]
                system.cell_of(bridge).kill()
                same = {"consumer": name} if how == "kill-same" else {}
                bridge = system.spawn(
                    ConsumerBridge, broker, stream, group, target, **options, **same
                )
        deadline = now() + PATIENCE
        while len(counts) < size or await broker.pending(stream, group):
            assert now() < deadline, f"{len(counts)}/{size} handled"
            await asyncio.sleep(0.005)
    await broker.close()
    assert set(counts) == set(range(size))  # at least once
    assert early_acks == []  # no ack before the handler returned
    assert await broker.dead_letters(stream) == []


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=faults)
def test_every_message_is_handled_and_nothing_is_acked_before_handling(
    broker_url: str, case: dict[str, Any]
) -> None:
    """The contract against each real broker (wall-clock waits)."""
    stream = f"p-{uuid.uuid4().hex}"
    asyncio.run(contract(connect(broker_url), stream, case, time.monotonic))


stream_faults = fault_plans(streams=["p"], kinds=[Duplicate, Redeliver, Disconnect])


@given(case=faults, seed=seeds(), plan=stream_faults)
def test_the_contract_holds_in_a_simulation_with_stream_faults(
    case: dict[str, Any], seed: int, plan: FaultPlan
) -> None:
    """The contract on ``SimulatedBroker``: seeded interleavings and virtual time, with
    duplicated deliveries, lost acks and disconnects drawn on top; a failure names the
    seed and plan that replay it."""

    async def scenario(sim: Any) -> None:
        await contract(SimulatedBroker(), "p", case, lambda: sim.now)

    simulate(scenario, seed=seed, faults=plan, max_time=600)
