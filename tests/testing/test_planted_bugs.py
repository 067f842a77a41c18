"""The toolkit finds planted races within a modest budget, and the reported seed replays them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import troupe
from troupe import Actor, ActorRef, ActorSystem, RestartPolicy
from troupe.testing import (
    Crash,
    FaultPlan,
    InjectedFault,
    Simulation,
    SimulationFailed,
    explore,
    fault_plans,
    no_effect_twice,
    no_message_lost,
    replay,
    simulate,
)

PAYMENTS = ["p1", "p2", "p3"]
YIELDS = 16  # about 1 seed in 10 hits the race (measured over 200 seeds)


class Store(Actor):
    """The idempotency store: which payments were done."""

    def __init__(self) -> None:
        self.done: set[str] = set()

    def receive(self, message: tuple[str, str]) -> bool:
        op, key = message
        if op == "seen?":
            return key in self.done
        if op == "claim":  # the fix: check and set in one message
            fresh = key not in self.done
            self.done.add(key)
            return fresh
        self.done.add(key)  # "mark"
        return True


class Bank(Actor):
    def __init__(self, charges: list[str]) -> None:
        self.charges = charges

    async def receive(self, key: str) -> None:
        await asyncio.sleep(0)  # the remote call yields to the loop
        self.charges.append(key)


class Worker(Actor):
    """Charges a payment unless the store has seen it: check, charge, then set (the race)."""

    def __init__(self, store: ActorRef, bank: ActorRef, atomic: bool) -> None:
        self.store, self.bank, self.atomic = store, bank, atomic

    async def receive(self, key: str) -> None:
        if self.atomic:
            if await self.store.ask(("claim", key)):
                await self.bank.ask(key)
            return
        if await self.store.ask(("seen?", key)):
            return
        await self.bank.ask(key)
        await self.store.ask(("mark", key))


async def payments(sim: Simulation[Any], atomic: bool = False) -> None:
    """Each payment goes to one worker; a client retry sends it to the other a little later
    (after ``YIELDS`` turns of the loop: time enough in asyncio's own order)."""
    charges: list[str] = []
    async with ActorSystem("pay", metrics=False) as system:
        store = system.spawn(Store, name="store")
        bank = system.spawn(Bank, charges, name="bank")
        workers = [system.spawn(Worker, store, bank, atomic, name=f"w{i}") for i in range(2)]
        for i, key in enumerate(PAYMENTS):
            workers[i % 2].tell(key)
            for _ in range(YIELDS):
                await asyncio.sleep(0)
            workers[(i + 1) % 2].tell(key)  # the retry: a duplicate
        await system.wait_idle()
    no_message_lost(PAYMENTS, charges)
    no_effect_twice(charges)


async def fixed_payments(sim: Simulation[Any]) -> None:
    await payments(sim, atomic=True)


def test_check_then_set_race_is_found_and_replays() -> None:
    with pytest.raises(SimulationFailed) as found:
        explore(payments, max_examples=100, derandomize=True)
    failure = found.value
    report = str(failure)
    assert "more than once" in report
    line = f"from troupe.testing import *; {failure.replay_call}"
    assert f"seed: {failure.seed}" in report and f"replay: {line}\n" in report
    # the call needs only troupe.testing's names, and reproduces the failure
    with pytest.raises(SimulationFailed, match="more than once"):
        eval(failure.replay_call, dict(vars(troupe.testing)))
    with pytest.raises(SimulationFailed):
        replay(payments, seed=failure.seed, faults=failure.faults)


def test_fifo_order_hides_the_race() -> None:
    simulate(payments, seed=0, fifo=True)  # asyncio's own order: passes every time


def test_the_fixed_version_survives_the_same_search() -> None:
    explore(fixed_payments, max_examples=100, derandomize=True)


# -- commit-before-handle: a crash between the commit and the effect loses the message ---


class Sink(Actor):
    """Where the consumer's effects land (it may crash, failing the consumer's ask)."""

    restart_policy = RestartPolicy(max_restarts=1000, within=1.0)

    def __init__(self, effects: list[int]) -> None:
        self.effects = effects

    def receive(self, entry: int) -> None:
        self.effects.append(entry)


class Consumer(Actor):
    """Handles delivered entries and commits them; a restart redelivers the uncommitted.
    ``commit_first`` commits before the effect: a crash in between loses the entry."""

    restart_policy = RestartPolicy(max_restarts=1000, within=1.0)

    def __init__(
        self, pending: set[int], queued: set[int], sink: ActorRef, commit_first: bool
    ) -> None:
        self.pending, self.queued = pending, queued
        self.sink, self.commit_first = sink, commit_first

    def on_restart(self, exc: BaseException) -> None:
        for entry in sorted(self.pending - self.queued):  # redeliver the uncommitted
            self.queued.add(entry)
            self.ref.tell(entry)

    async def receive(self, entry: int) -> None:
        self.queued.discard(entry)
        if self.commit_first:
            self.pending.discard(entry)
        await self.sink.ask(entry)
        self.pending.discard(entry)


async def consume(sim: Simulation[Any], commit_first: bool = True) -> None:
    entries = list(range(8))
    pending: set[int] = set()  # delivered, not yet committed
    queued: set[int] = set()  # in the consumer's mailbox
    effects: list[int] = []
    async with ActorSystem("consume", metrics=False) as system:
        sink = system.spawn(Sink, effects, name="sink")
        consumer = system.spawn(Consumer, pending, queued, sink, commit_first, name="consumer")
        for entry in entries:
            pending.add(entry)
            queued.add(entry)
            consumer.tell(entry)
        await asyncio.sleep(1)
        await system.wait_idle()
    no_message_lost(entries, effects)


async def handle_then_commit(sim: Simulation[Any]) -> None:
    await consume(sim, commit_first=False)


def test_commit_before_handle_is_found_by_a_crash_plan() -> None:
    plans = fault_plans(actors=["sink"], kinds=[Crash], max_at=8)
    with pytest.raises(SimulationFailed) as found:
        explore(consume, faults=plans, max_examples=100, derandomize=True, max_time=60)
    failure = found.value
    assert "lost" in str(failure)
    assert any(isinstance(f, Crash) for f in failure.faults.faults)  # shrunk to a crash
    with pytest.raises(SimulationFailed, match="lost"):
        replay(consume, seed=failure.seed, faults=failure.faults)
    explore(handle_then_commit, faults=plans, max_examples=60, derandomize=True, max_time=60)


def test_an_injected_crash_fires_at_the_nth_message_only() -> None:
    run = simulate(handle_then_commit, seed=1, faults=FaultPlan(Crash("sink", at=3)))
    [crash] = run.trace.kinds("crash")
    assert crash.actor == "sink" and crash.detail == "2"
    assert run.injector.injected == {"crash": 1}
    consumer = [e.detail for e in run.trace.of("consumer")]
    assert consumer.count("2") == 2  # the failed ask failed the consumer; 2 came again
    handled = [int(e.detail) for e in run.trace.of("sink") if e.kind == "handle"]
    assert sorted(handled) == list(range(8)) and handled[-1] == 2  # redelivered last


def test_a_crash_raises_injected_fault_to_the_asker() -> None:
    async def scenario(sim: Simulation[Any]) -> None:
        async with ActorSystem(metrics=False) as system:
            sink = system.spawn(Sink, [], name="sink")
            with pytest.raises(InjectedFault, match="sink at its message 1"):
                await sink.ask(1)
            await sink.ask(2)  # restarted, handles the next one

    simulate(scenario, seed=0, faults=FaultPlan(Crash("sink", at=1)))


async def always_fails(sim: Simulation[Any]) -> None:
    raise AssertionError(f"planted failure under seed {sim.seed}")


def test_the_printed_replay_line_runs_as_pasted() -> None:
    """The report's replay line, pasted alone into a fresh interpreter, reruns the failure
    (the plan's fault names included: no NameError for FaultPlan or Crash)."""
    plan = FaultPlan(Crash("w*", at=99))  # a plan with a fault: its names must resolve
    with pytest.raises(SimulationFailed) as found:
        simulate(always_fails, seed=3, faults=plan)
    line = next(
        text.removeprefix("replay: ")
        for text in (s.strip() for s in str(found.value).splitlines())
        if text.startswith("replay: ")
    )
    assert line.startswith("from troupe.testing import *; replay(") and "Crash(" in line
    done = subprocess.run(
        [sys.executable, "-c", line],
        cwd=Path(__file__).resolve().parents[2],  # where `tests.testing...` imports from
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "SimulationFailed" in done.stderr and "NameError" not in done.stderr
