"""Simulation: one seed gives one exact run; other seeds give other interleavings."""

from __future__ import annotations

import asyncio
from typing import Any

from troupe import Actor, ActorRef, ActorSystem, RestartPolicy
from troupe.testing import Crash, Delay, Drop, FaultPlan, SimulatedLoop, Simulation, simulate


class Relay(Actor):
    """Passes each number on to the next actor, sometimes after a nap."""

    def __init__(self, nxt: ActorRef | None, sink: ActorRef) -> None:
        self.nxt = nxt
        self.sink = sink

    async def receive(self, message: Any) -> None:
        if message % 3 == 0:
            await asyncio.sleep(0.01 * (message % 7))
        (self.nxt or self.sink).tell(message)


class Sink(Actor):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append(message)


class Ticker(Actor):
    def __init__(self, sink: ActorRef) -> None:
        self.sink = sink
        self.n = 0

    def on_start(self) -> None:
        self.timers.every(0.05, "tick")

    def receive(self, message: Any) -> None:
        self.n += 1
        self.sink.tell(1000 + self.n)


async def busy(sim: Simulation[Any]) -> list[int]:
    """Four producers, two relay chains, a ticker, restarts with backoff."""
    seen: list[int] = []
    policy = RestartPolicy(max_restarts=100, within=1.0)
    async with ActorSystem("busy", metrics=False, restart=policy) as system:
        sink = system.spawn(Sink, seen, name="sink")
        chains = []
        for c in range(2):
            nxt = None
            for i in range(3):
                nxt = system.spawn(Relay, nxt, sink, name=f"relay-{c}-{i}")
            chains.append(nxt)
        system.spawn(Ticker, sink, name="ticker")

        async def producer(p: int) -> None:
            for n in range(25):
                assert chains[(p + n) % 2] is not None
                chains[(p + n) % 2].tell(p * 100 + n)
                if n % 5 == 0:
                    await asyncio.sleep(0.003 * p)

        await asyncio.gather(*(producer(p) for p in range(4)))
        await asyncio.sleep(0.3)
        await system.wait_idle()
    return seen


def test_same_seed_same_trace_exactly() -> None:
    plan = FaultPlan(Crash("relay-0-*", p=0.05), Drop("relay-1-1", p=0.05), Delay("sink", at=7))
    first = simulate(busy, seed=42, faults=plan)
    second = simulate(busy, seed=42, faults=plan)
    assert len(first.trace) > 300
    assert first.trace.lines() == second.trace.lines()
    assert first.result == second.result
    assert first.injector.injected == second.injector.injected
    assert first.injector.injected.get("crash", 0) > 0  # the faults did fire


def test_different_seeds_interleave_differently() -> None:
    runs = [simulate(busy, seed=seed) for seed in range(5)]
    orders = {tuple(run.result) for run in runs if run.result is not None}
    traces = {tuple(run.trace.lines()) for run in runs}
    assert len(traces) == 5
    assert len(orders) >= 4
    for run in runs:  # every order is a legal one: nothing lost, nothing twice
        assert run.result is not None
        handled = [n for n in run.result if n < 1000]
        assert sorted(handled) == sorted(p * 100 + n for p in range(4) for n in range(25))


def test_virtual_time_is_instant_and_ordered() -> None:
    fired: list[tuple[float, str]] = []

    async def scenario(sim: Simulation[Any]) -> float:
        loop = asyncio.get_running_loop()
        for delay, label in [(30.0, "c"), (10.0, "a"), (20.0, "b")]:
            loop.call_later(delay, lambda label=label: fired.append((loop.time(), label)))
        await asyncio.sleep(3600)
        return loop.time()

    run = simulate(scenario, seed=1)
    assert run.result == 3600.0
    assert fired == [(10.0, "a"), (20.0, "b"), (30.0, "c")]


def test_fifo_mode_keeps_asyncio_order() -> None:
    order: list[int] = []
    loop = SimulatedLoop(seed=9, fifo=True)
    try:
        for i in range(20):
            loop.call_soon(order.append, i)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert order == list(range(20))
    assert loop.choices == 0
