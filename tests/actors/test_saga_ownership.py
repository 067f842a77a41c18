"""Saga ownership in-process: two orchestrators on one log, fencing, the outcome outbox,
and the log lines and counters of retries, timeouts and compensations."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from troupe import Actor, ActorSystem
from troupe.actors.retry import Retry
from troupe.actors.saga import (
    GetSagaStats,
    SagaDefinition,
    SagaFinished,
    SagaOrchestrator,
    SagaStep,
    StartSaga,
    Step,
)
from troupe.actors.saga_log import MemorySagaLog, SagaStatus
from troupe.errors import ConfigError

from .helpers import Recorder, eventually


class Slow(SagaStep):
    """Records every action; the first ``slow_calls`` take ``delay`` seconds."""

    def __init__(self, name: str, calls: list[str], delay: float = 0.0, slow_calls: int = 0):
        self.step = name
        self.calls = calls
        self.delay = delay
        self.slow_calls = slow_calls

    async def action(self, saga_id: str, data: dict[str, Any]) -> None:
        self.calls.append(f"do {self.step}")
        if self.slow_calls > 0:
            self.slow_calls -= 1
            await asyncio.sleep(self.delay)

    def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        self.calls.append(f"undo {self.step}")


def trip(
    timeout: float = 1.0, retry: Retry | None = None, undo: Retry | None = None
) -> SagaDefinition:
    retry = retry or Retry(max_attempts=3, initial=0.001, maximum=0.01)
    return SagaDefinition(
        "trip",
        tuple(Step(n, f"step-{n}", timeout=timeout, retry=retry) for n in "ab"),
        compensation_retry=undo or Retry(max_attempts=3, initial=0.001, maximum=0.01),
    )


async def test_a_stale_owner_is_fenced_and_stops_while_the_new_owner_finishes() -> None:
    log = MemorySagaLog()
    async with ActorSystem() as system:
        calls: list[str] = []
        finished: list[Any] = []
        system.spawn(Slow, "a", calls, name="step-a")
        system.spawn(Slow, "b", calls, 0.4, 1, name="step-b")  # the first b takes 0.4 s
        listener = system.spawn(Recorder, finished)
        first = system.spawn(SagaOrchestrator, trip(), log, listener=listener, lease=30)
        await first.ask(StartSaga("t1", {}))
        await eventually(lambda: calls == ["do a", "do b"])
        record = await log.load("trip", "t1")
        assert record is not None
        await log.release(record.owner)  # first's lease ran out (a pause, a partition)
        second = system.spawn(SagaOrchestrator, trip(), log, listener=listener, lease=0.3)
        await eventually(lambda: len(finished) == 1)
        await asyncio.sleep(0.5)  # the first's slow reply arrives: its save is refused
        stats_first = await first.ask(GetSagaStats())
        stats_second = await second.ask(GetSagaStats())
        assert stats_first.fenced == 1 and stats_second.taken_over == 1
        assert stats_first.completed + stats_second.completed == 1
        assert [m.saga_id for m in finished] == ["t1"]
        assert finished[0].status is SagaStatus.COMPLETED
        assert calls == ["do a", "do b", "do b"]  # b re-sent once (idempotent by saga id)
        stored = await log.load("trip", "t1")
        assert stored is not None and stored.fence == 2 and stored.owner != record.owner
        assert not stored.outcome_pending


async def test_a_second_orchestrator_does_not_take_over_live_sagas() -> None:
    log = MemorySagaLog()
    async with ActorSystem() as system:
        calls: list[str] = []
        finished: list[Any] = []
        system.spawn(Slow, "a", calls, name="step-a")
        system.spawn(Slow, "b", calls, 0.5, 1, name="step-b")
        listener = system.spawn(Recorder, finished)
        first = system.spawn(SagaOrchestrator, trip(), log, listener=listener, lease=0.3)
        await first.ask(StartSaga("t1", {}))
        second = system.spawn(SagaOrchestrator, trip(), log, listener=listener, lease=0.3)
        await eventually(lambda: len(finished) == 1)
        await asyncio.sleep(0.2)
        assert calls == ["do a", "do b"]  # b took longer than the lease: renewals kept it
        assert (await second.ask(GetSagaStats())).taken_over == 0
        assert (await first.ask(GetSagaStats())).fenced == 0


class Flaky(Actor):
    """A listener whose first ``fail[0]`` deliveries raise; records what it handled."""

    def __init__(self, seen: list[Any], fail: list[int]) -> None:
        self.seen = seen
        self.fail = fail  # shared: survives the listener's restarts

    def receive(self, message: Any) -> None:
        if self.fail[0] > 0:
            self.fail[0] -= 1
            raise ConnectionError("listener down")
        self.seen.append(message)


async def test_the_outcome_is_resent_until_the_listener_acknowledges() -> None:
    log = MemorySagaLog()
    async with ActorSystem() as system:
        calls: list[str] = []
        seen: list[Any] = []
        for n in "ab":
            system.spawn(Slow, n, calls, name=f"step-{n}")
        system.spawn(Flaky, seen, [2], name="listener")
        orchestrator = system.spawn(SagaOrchestrator, trip(), log, listener="listener")
        await orchestrator.ask(StartSaga("t1", {}))
        await eventually(lambda: len(seen) == 1)
        assert seen[0].saga_id == "t1" and seen[0].status is SagaStatus.COMPLETED
        await outbox_is(log, [])  # acknowledged: out of the outbox


class Stuck(Actor):
    """A listener that never finishes handling (the process dies meanwhile)."""

    async def receive(self, message: Any) -> None:
        await asyncio.sleep(3600)


async def test_a_crash_between_the_final_write_and_the_listener_still_delivers() -> None:
    """In-process model of a crash: the first system is torn down while its listener
    is still handling the outcome (never acknowledged); a fresh orchestrator on the
    same log delivers it again. The shutdown releases the lease, so this does not
    model the wait for a dead owner's lease: the subprocess version with kill -9 in
    tests/brokers/test_saga_processes.py does."""
    log = MemorySagaLog()
    calls: list[str] = []
    async with ActorSystem(shutdown_timeout=0) as system:
        for n in "ab":
            system.spawn(Slow, n, calls, name=f"step-{n}")
        system.spawn(Stuck, name="listener")
        orchestrator = system.spawn(SagaOrchestrator, trip(), log, listener="listener", lease=0.3)
        await orchestrator.ask(StartSaga("t1", {}))
        await outbox_is(log, ["t1"])
        record = await log.load("trip", "t1")
        assert record is not None and record.status is SagaStatus.COMPLETED
    async with ActorSystem() as system:
        seen: list[Any] = []
        for n in "ab":
            system.spawn(Slow, n, calls, name=f"step-{n}")
        system.spawn(Recorder, seen, name="listener")
        system.spawn(SagaOrchestrator, trip(), log, listener="listener", lease=0.3)
        await eventually(lambda: len(seen) == 1, timeout=5)
        assert isinstance(seen[0], SagaFinished) and seen[0].saga_id == "t1"
        assert calls == ["do a", "do b"]  # nothing ran again: only the outcome was re-sent
        await outbox_is(log, [])


async def test_retries_timeouts_and_compensations_are_logged_once_with_their_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = MemorySagaLog()
    caplog.set_level(logging.INFO, logger="troupe.actors")
    async with ActorSystem() as system:
        calls: list[str] = []
        finished: list[Any] = []
        system.spawn(Slow, "a", calls, name="step-a")
        system.spawn(Slow, "b", calls, 0.2, 2, name="step-b")  # too slow, twice
        definition = trip(
            timeout=0.05,
            retry=Retry(max_attempts=2, initial=0.001, maximum=0.01),
            undo=Retry(max_attempts=50, initial=0.01, maximum=0.02),
        )
        orchestrator = system.spawn(
            SagaOrchestrator, definition, log, listener=system.spawn(Recorder, finished)
        )
        await orchestrator.ask(StartSaga("t9", {}))
        await eventually(lambda: len(finished) == 1)
        done = finished[0]
        assert done.status is SagaStatus.COMPENSATED and done.cause == "timeouts"
        stats = await orchestrator.ask(GetSagaStats())
        assert stats.step_timeouts == 2 and stats.action_retries == 1
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("troupe.actors.saga")]
    retried = [m for m in lines if "step b" in m and "retrying" in m]
    gave_up = [m for m in lines if "giving up" in m]
    undo_retries = [m for m in lines if "compensation of b" in m and "retrying" in m]
    undone = [m for m in lines if "compensated step" in m]
    assert len(retried) == 1 and retried[0].startswith(
        "saga trip/t9 step b attempt 1/2 timed out after 0.05 s; retrying in"
    )
    assert gave_up == [
        "saga trip/t9 step b attempt 2/2 timed out after 0.05 s; giving up: compensating"
    ]
    # b's compensations time out behind its slow actions: each retry logged once, counted
    assert len(undo_retries) == stats.compensation_retries == stats.compensation_timeouts > 0
    assert [m.split(" (attempt")[0] for m in undone] == [
        "saga trip/t9 compensated step b",
        "saga trip/t9 compensated step a",
    ]
    assert undone[1].endswith("(attempt 1)")


def test_lease_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"saga\.lease"):
        SagaOrchestrator(trip(), lease=0)
    with pytest.raises(ConfigError, match=r"saga\.listener_timeout"):
        SagaOrchestrator(trip(), listener_timeout=-1)


async def outbox_is(log: MemorySagaLog, ids: list[str], timeout: float = 5.0) -> None:
    """Wait until the log's outbox holds exactly ``ids``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while sorted(r.saga_id for r in await log.outbox("trip")) != ids:
        assert asyncio.get_running_loop().time() < deadline, await log.outbox("trip")
        await asyncio.sleep(0.005)


def test_step_timeouts_are_exported_to_prometheus() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from troupe.actors.saga import SagaStats
    from troupe.actors.saga_metrics import SagaCollector

    registry = CollectorRegistry()
    registry.register(SagaCollector({"trip": SagaStats(step_timeouts=3, compensation_timeouts=1)}))
    text = generate_latest(registry).decode()
    assert 'troupe_saga_step_timeouts_total{kind="action",saga="trip"} 3.0' in text
    assert 'troupe_saga_step_timeouts_total{kind="compensation",saga="trip"} 1.0' in text
