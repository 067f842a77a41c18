"""Sharded entities on ``troupe.testing``'s simulation: 1,000 keys, two members sharing
the shard leases (one joins and one leaves at seeded moments), and seeded faults —
crashes of the entity host actors, duplicated deliveries, lost acks (redelivery) and
bridge disconnects. Every key's final state is the exact sum of its events, each applied
once and in publish order; a failure prints the seed and plan that replay it.

Example counts follow the suite's hypothesis profile (``ci``: modest; run
``TROUPE_HYPOTHESIS_PROFILE=deep`` for a deeper search)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from hypothesis import given

from troupe import ActorSystem, Backoff, RestartPolicy
from troupe.actors.entities import Entities, Entity
from troupe.brokers.faults import SimulatedBroker
from troupe.brokers.state import MemoryShardLeases, MemoryStateStore
from troupe.testing import (
    Crash,
    Disconnect,
    Duplicate,
    FaultPlan,
    Redeliver,
    Simulation,
    fault_plans,
    seeds,
    simulate,
)

KIND = "tally"
KEYS = 1000
EVENTS = 5000  # 5 events per key: order per key is checked on every key
SHARDS = 6
HOSTS = f"entities.{KIND}.*.host"  # every member's host of every shard and lease
STREAMS = f"{KIND}.*"  # the shard streams
TOLERANT = RestartPolicy(
    max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.01)
)
BRIDGE: dict[str, Any] = {
    "retry": Backoff(initial=0.001, maximum=0.005, jitter="none"),
    "block": 0.02,
    "claim_idle": 0.2,
    "max_deliveries": 1_000,  # an injected fault never dead-letters an event
    "drain_timeout": 0.5,
}


class Tally(Entity):
    """Adds each event's amount to its key's total and keeps the sequence numbers."""

    def initial_state(self) -> dict[str, Any]:
        return {"total": 0, "seqs": []}

    def handle(self, message: dict[str, int]) -> None:
        self.state["total"] += message["add"]
        self.state["seqs"].append(message["seq"])


def member(
    system: ActorSystem, broker: SimulatedBroker, store: MemoryStateStore, name: str
) -> Entities:
    assert store.leases is not None
    return Entities(
        system, broker, Tally, kind=KIND, store=store, leases=store.leases, shards=SHARDS,
        member=name, lease_ttl=0.6, passivate_after=0.5, max_active=300, batch=16, **BRIDGE,
    )


async def thousand_keys(sim: Simulation[Any]) -> dict[str, int]:
    """Publish EVENTS events over KEYS keys while members come and go; check the sums."""
    loop = asyncio.get_running_loop()
    broker = SimulatedBroker()
    store = MemoryStateStore(MemoryShardLeases(clock=loop.time))
    expected: dict[str, list[int]] = defaultdict(list)
    amounts: dict[str, int] = defaultdict(int)
    join_at, leave_at = sorted(sim.rng.sample(range(1, 10), 2))  # tenths of the stream
    async with ActorSystem(KIND, metrics=False, restart=TOLERANT) as system:
        members = [member(system, broker, store, "a"), member(system, broker, store, "b")]
        everyone = list(members)
        for m in members:
            await m.start()
        sender = members[0]
        per_step = EVENTS // 10
        for step in range(10):
            if step == join_at:
                members.append(member(system, broker, store, "c"))
                everyone.append(members[-1])
                await members[-1].start()
                sim.note("test", "c joins")
            if step == leave_at:
                leaver = members.pop(1)
                await leaver.stop()
                sim.note("test", f"{leaver.member} leaves")
            batches: dict[str, list[Any]] = defaultdict(list)
            for seq in range(step * per_step, (step + 1) * per_step):
                key = f"k{(seq * 7919) % KEYS}"
                add = seq % 13 + 1
                expected[key].append(seq)
                amounts[key] += add
                publish = sender.publish(key, None)
                assert publish.stream is not None
                batches[publish.stream].append(broker.message({"add": add, "seq": seq}, key=key))
            for stream, messages in batches.items():
                await broker.publish_messages(stream, messages)
            await asyncio.sleep(0.2)  # the stream flows past several lease rounds

        def applied() -> int:
            return sum(len(json.loads(r.state)["seqs"]) for r in store.records.values())

        while applied() < EVENTS:
            assert sim.now < 300, f"{applied()} of {EVENTS} events applied by t={sim.now:g}"
            await asyncio.sleep(0.05)
        for m in members:
            await m.stop()
    states = {k: json.loads(r.state) for (kind, k), r in store.records.items() if kind == KIND}
    assert len(states) == KEYS
    for key, seqs in expected.items():
        assert states[key]["seqs"] == seqs, key  # each event once, in publish order
        assert states[key]["total"] == amounts[key], key
    for shard in range(SHARDS):
        assert await broker.dead_letters(f"{KIND}.{shard}") == []
    saved = {m.member: sum(s.saved for s in m.stats.values()) for m in everyone}
    return {"injected": dict(sim.injector.injected), "saved": saved}


PLANS = fault_plans(
    actors=[HOSTS],
    streams=[STREAMS],
    kinds=[Crash, Duplicate, Redeliver, Disconnect],
    max_faults=4,
    max_at=200,
    max_p=0.03,
)


@given(seed=seeds(), plan=PLANS)
def test_every_key_sums_its_events_exactly_under_seeded_faults(
    seed: int, plan: FaultPlan
) -> None:
    simulate(thousand_keys, seed=seed, faults=plan)


def test_each_fault_kind_fires_and_the_sums_stay_exact() -> None:
    plan = FaultPlan(
        Crash(HOSTS, p=0.01),
        Duplicate(STREAMS, p=0.03),
        Redeliver(STREAMS, p=0.03),
        Disconnect(STREAMS, p=0.02),
    )
    run = simulate(thousand_keys, seed=7, faults=plan)
    assert run.result is not None
    injected = run.result["injected"]
    assert set(injected) == {"crash", "duplicate", "redeliver", "disconnect"}, injected
    assert all(run.result["saved"].values()), run.result  # a, b and the joiner c hosted


def test_a_run_replays_exactly_from_its_seed() -> None:
    plan = FaultPlan(Crash(HOSTS, at=3), Duplicate(STREAMS, p=0.02), Redeliver(STREAMS, at=40))
    first = simulate(thousand_keys, seed=3, faults=plan)
    second = simulate(thousand_keys, seed=3, faults=plan)
    assert first.trace.lines() == second.trace.lines()
    assert first.result == second.result
