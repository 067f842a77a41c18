"""Saga orchestrator: forward steps, compensation in reverse, retries, timeouts, parking, resume."""

from __future__ import annotations

import asyncio
from typing import Any

from troupe import ActorSystem, Child
from troupe.actors.retry import Retry
from troupe.actors.saga import (
    GetSaga,
    GetSagaStats,
    ParkedSagas,
    RetryParked,
    SagaDefinition,
    SagaFinished,
    SagaOrchestrator,
    SagaStep,
    StartSaga,
    Step,
    StepRejected,
)
from troupe.actors.saga_log import MemorySagaLog, SagaStatus

from .helpers import Recorder, eventually

FAST = Retry(max_attempts=3, initial=0.001, maximum=0.01)


class Journal(SagaStep):
    """A step that writes what it does into a shared journal; behaviour set per test."""

    def __init__(self, name: str, journal: list[str], plan: dict[str, Any]) -> None:
        self.step_name = name
        self.journal = journal
        self.plan = plan

    async def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        behaviour = self.plan.get(self.step_name)
        if behaviour == "reject":
            raise StepRejected(f"{self.step_name} says no")
        if behaviour == "crash-once" and not self.plan.get(f"{self.step_name}-crashed"):
            self.plan[f"{self.step_name}-crashed"] = True
            raise RuntimeError("crash")
        if behaviour == "hang":
            await asyncio.sleep(3600)
        if behaviour == "slow":
            await asyncio.sleep(0.15)
        self.journal.append(f"do {self.step_name}")
        return {self.step_name: "done"}

    def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        failures = self.plan.get(f"{self.step_name}-undo-failures", 0)
        if failures:
            self.plan[f"{self.step_name}-undo-failures"] = failures - 1
            raise ConnectionError("undo failed")
        self.journal.append(f"undo {self.step_name}")


def definition(
    timeout: float = 1.0, retry: Retry = FAST, undo: Retry | None = None
) -> SagaDefinition:
    return SagaDefinition(
        "trip",
        tuple(Step(name, f"step-{name}", timeout=timeout, retry=retry) for name in "abc"),
        compensation_retry=undo or Retry(max_attempts=3, initial=0.001, maximum=0.01),
    )


async def run_saga(
    plan: dict[str, Any], timeout: float = 1.0, **options: Any
) -> tuple[list[str], Any, Any]:
    async with ActorSystem() as system:
        journal: list[str] = []
        finished: list[Any] = []
        for name in "abc":
            system.spawn(Journal, name, journal, plan, name=f"step-{name}")
        log = MemorySagaLog()
        orchestrator = system.spawn(
            SagaOrchestrator,
            definition(timeout, **options),
            log,
            listener=system.spawn(Recorder, finished),
            name="trips",
        )
        assert await orchestrator.ask(StartSaga("t1", {"who": "ada"})) == "started"
        await eventually(lambda: len(finished) == 1)
        record = await orchestrator.ask(GetSaga("t1"))
        stats = await orchestrator.ask(GetSagaStats())
        return journal, finished[0], (record, stats, orchestrator, system)


async def test_all_steps_succeed_in_order() -> None:
    journal, done, (record, stats, _, _) = await run_saga({})
    assert journal == ["do a", "do b", "do c"]
    assert isinstance(done, SagaFinished) and done.status is SagaStatus.COMPLETED
    assert done.data == {"who": "ada", "a": "done", "b": "done", "c": "done"}
    assert record.status is SagaStatus.COMPLETED and record.done == ["a", "b", "c"]
    assert stats.completed == 1


async def test_rejection_compensates_done_steps_in_reverse() -> None:
    journal, done, (record, _, _, _) = await run_saga({"c": "reject"})
    assert journal == ["do a", "do b", "undo b", "undo a"]
    assert done.status is SagaStatus.COMPENSATED
    assert done.failed_step == "c" and done.error == "c says no"
    assert record.compensated == ["b", "a"]


async def test_a_crashing_step_is_retried_after_its_restart() -> None:
    journal, done, (_, stats, _, system) = await run_saga({"b": "crash-once"})
    assert journal == ["do a", "do b", "do c"]
    assert done.status is SagaStatus.COMPLETED
    assert stats.action_retries == 1 and system.restarts >= 1


async def test_step_timeout_compensates_including_the_uncertain_step() -> None:
    undo = Retry(max_attempts=20, initial=0.01, maximum=0.05)
    journal, done, _ = await run_saga({"b": "slow"}, timeout=0.05, retry=Retry.never(), undo=undo)
    assert done.status is SagaStatus.COMPENSATED and "AskTimeout" in (done.error or "")
    # b timed out, yet its action landed late: it is compensated too, after it finished.
    # Compensation asks that timed out behind the slow action still run later: undo of b
    # may happen more than once, which is why compensations must be idempotent.
    assert journal[:3] == ["do a", "do b", "undo b"] and journal[-1] == "undo a"
    assert set(journal[3:-1]) <= {"undo b"}


async def test_compensations_retry_then_park_as_needs_attention() -> None:
    plan: dict[str, Any] = {"c": "reject", "b-undo-failures": 2}
    journal, done, (_, stats, _, _) = await run_saga(plan)
    assert done.status is SagaStatus.COMPENSATED  # two failures, third attempt works
    assert stats.compensation_retries == 2
    plan = {"c": "reject", "b-undo-failures": 10}
    journal, done, (record, stats, _, _) = await run_saga(plan)
    assert done.status is SagaStatus.NEEDS_ATTENTION
    assert journal == ["do a", "do b"]  # a is not undone while b is stuck: order is kept
    assert record.status is SagaStatus.NEEDS_ATTENTION and "ConnectionError" in record.error
    assert stats.needs_attention == 1


async def test_parked_saga_is_listed_and_can_be_retried() -> None:
    async with ActorSystem() as system:
        journal: list[str] = []
        finished: list[Any] = []
        plan: dict[str, Any] = {"c": "reject", "b-undo-failures": 3}
        for name in "abc":
            system.spawn(Journal, name, journal, plan, name=f"step-{name}")
        orchestrator = system.spawn(
            SagaOrchestrator, definition(), listener=system.spawn(Recorder, finished)
        )
        await orchestrator.ask(StartSaga("t1", {}))
        await eventually(lambda: len(finished) == 1)
        parked = await orchestrator.ask(ParkedSagas())
        assert [r.saga_id for r in parked] == ["t1"]
        assert await orchestrator.ask(RetryParked("t1")) == "compensating"
        await eventually(lambda: len(finished) == 2)
        assert finished[1].status is SagaStatus.COMPENSATED
        assert journal[-2:] == ["undo b", "undo a"]
        assert await orchestrator.ask(ParkedSagas()) == []
        assert (await orchestrator.ask(GetSagaStats())).needs_attention == 0


async def test_duplicate_start_runs_nothing() -> None:
    async with ActorSystem() as system:
        journal: list[str] = []
        for name in "abc":
            system.spawn(Journal, name, journal, {}, name=f"step-{name}")
        finished: list[Any] = []
        orchestrator = system.spawn(
            SagaOrchestrator, definition(), listener=system.spawn(Recorder, finished)
        )
        replies = [await orchestrator.ask(StartSaga("t1", {})) for _ in range(3)]
        await eventually(lambda: len(finished) == 1)
        assert replies[0] == "started" and replies[1] in ("running", "completed")
        assert await orchestrator.ask(StartSaga("t1", {})) == "completed"
        assert journal == ["do a", "do b", "do c"]
        assert (await orchestrator.ask(GetSagaStats())).duplicates == 3


async def test_a_restarted_orchestrator_resumes_unfinished_sagas_from_the_log() -> None:
    log = MemorySagaLog()
    journal: list[str] = []
    plan: dict[str, Any] = {"b": "hang"}
    async with ActorSystem() as system:  # the first "process": dies while b hangs
        for name in "abc":
            system.spawn(Journal, name, journal, plan, name=f"step-{name}")
        orchestrator = system.spawn(SagaOrchestrator, definition(timeout=60), log, lease=0.2)
        await orchestrator.ask(StartSaga("t1", {}))
        await eventually(lambda: journal == ["do a"])
        await asyncio.sleep(0.01)
        await system.shutdown(timeout=0)
    record = await log.load("trip", "t1")
    assert record is not None and record.status is SagaStatus.RUNNING
    assert record.step == 1 and record.step_started
    plan.clear()
    async with ActorSystem() as system:  # the second "process" resumes from the log
        finished: list[Any] = []
        for name in "abc":
            system.spawn(Journal, name, journal, plan, name=f"step-{name}")
        orchestrator = system.spawn(
            SagaOrchestrator,
            definition(),
            log,
            listener=system.spawn(Recorder, finished),
            lease=0.3,
        )
        # the first process died holding its lease: its saga is taken over once it ran out
        await eventually(lambda: len(finished) == 1)
        assert finished[0].status is SagaStatus.COMPLETED
        assert journal == ["do a", "do b", "do c"]
        stats = await orchestrator.ask(GetSagaStats())
        assert stats.resumed == 1 and stats.taken_over == 1


def test_saga_record_json_round_trip_covers_every_field() -> None:
    import dataclasses
    import json

    from troupe.actors.saga_log import SagaRecord

    record = SagaRecord(
        "s1",
        "trip",
        {"x": [1, 2]},
        SagaStatus.COMPENSATING,
        2,
        True,
        ["a", "b"],
        ["b"],
        ["c"],
        3,
        "b",
        "boom",
        9,
    )
    text = record.to_json()
    assert set(json.loads(text)) == {f.name for f in dataclasses.fields(SagaRecord)}
    assert SagaRecord.from_json(text) == record


async def test_a_saga_that_was_compensating_resumes_compensating_in_reverse() -> None:
    from troupe.actors.saga_log import SagaRecord

    log = MemorySagaLog()
    record = SagaRecord("t1", "trip", {}, SagaStatus.COMPENSATING, step=2, done=["a", "b"])
    record.to_compensate = ["b", "a"]
    record.failed_step = "c"
    await log.create(record)
    async with ActorSystem() as system:
        journal: list[str] = []
        finished: list[Any] = []
        for name in "abc":
            system.spawn(Journal, name, journal, {}, name=f"step-{name}")
        system.spawn(SagaOrchestrator, definition(), log, listener=system.spawn(Recorder, finished))
        await eventually(lambda: len(finished) == 1)
        assert finished[0].status is SagaStatus.COMPENSATED
        assert journal == ["undo b", "undo a"]


async def test_an_orchestrator_that_crashes_and_restarts_resumes_its_sagas() -> None:
    async with ActorSystem() as system:
        journal: list[str] = []
        finished: list[Any] = []
        plan: dict[str, Any] = {"b": "slow"}
        for name in "abc":
            system.spawn(Journal, name, journal, plan, name=f"step-{name}")
        orchestrator = system.spawn(
            SagaOrchestrator, definition(), listener=system.spawn(Recorder, finished)
        )
        await orchestrator.ask(StartSaga("t1", {}))
        await eventually(lambda: journal == ["do a"])
        orchestrator.tell("not a saga message")  # fails the orchestrator: it restarts
        await eventually(lambda: len(finished) == 1)
        assert finished[0].status is SagaStatus.COMPLETED
        assert journal == ["do a", "do b", "do c"]
        stats = await orchestrator.ask(GetSagaStats())
        assert system.restarts >= 1 and stats.resumed >= 1


class Flaky(Journal):
    """Fails the first attempt of every saga (a dependency that hiccups), rejects some."""

    async def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.step_name == "b" and saga_id not in self.plan:
            self.plan[saga_id] = True
            raise ConnectionError(f"b hiccup on {saga_id}")
        if self.step_name == "c" and saga_id.endswith("7"):
            raise StepRejected("c says no")
        return await super().action(saga_id, data)


async def test_steps_that_keep_raising_are_outcomes_and_park_no_healthy_saga() -> None:
    """A shared step actor raising for 60 sagas in a row (asks: answered failures) never
    backs off, so no compensation waits behind it and no saga needs a person."""
    async with ActorSystem() as system:
        journal: list[str] = []
        finished: list[Any] = []
        plan: dict[str, Any] = {}
        for name in "abc":
            system.spawn(Flaky, name, journal, plan, name=f"step-{name}")
        orchestrator = system.spawn(
            SagaOrchestrator,
            definition(timeout=1.0),
            MemorySagaLog(),
            listener=system.spawn(Recorder, finished),
            name="trips",
        )
        for i in range(60):
            await orchestrator.ask(StartSaga(f"t{i}", {}))
        await eventually(lambda: len(finished) == 60, timeout=30)
        statuses = [f.status for f in finished]
        assert statuses.count(SagaStatus.COMPENSATED) == 6  # t7, t17, ..., t57: rejected by c
        assert statuses.count(SagaStatus.COMPLETED) == 54
        assert SagaStatus.NEEDS_ATTENTION not in statuses
        assert Child.of(system.lookup("step-b")).restarts == 60  # each at once
