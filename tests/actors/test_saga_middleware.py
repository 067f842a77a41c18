"""Saga-step middleware hooks: around each action and each compensation, in order."""

from __future__ import annotations

from typing import Any

from troupe import ActorSystem, Middleware
from troupe.actors.retry import Retry
from troupe.actors.saga import (
    SagaDefinition,
    SagaOrchestrator,
    SagaStep,
    StartSaga,
    Step,
    StepRejected,
)
from troupe.actors.saga_log import MemorySagaLog

from .helpers import Recorder, eventually


class Plain(SagaStep):
    def __init__(self, name: str) -> None:
        self.step_name = name

    def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.step_name == "c":
            raise StepRejected("c says no")
        return {self.step_name: "done"}

    def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        return None


class Steps(Middleware):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def before_saga_step(self, saga: str, run_id: str, step: str, action: str) -> None:
        self.seen.append(("before", saga, run_id, step, action))

    def after_saga_step(
        self, saga: str, run_id: str, step: str, action: str, error: BaseException | None
    ) -> None:
        self.seen.append(("after", step, action, error))


async def test_saga_step_hooks_run_around_actions_and_compensations() -> None:
    steps = Steps()
    finished: list[Any] = []
    fast = Retry(max_attempts=1, initial=0.001, maximum=0.01)
    definition = SagaDefinition(
        "trip", tuple(Step(n, f"step-{n}", retry=fast) for n in "abc"), compensation_retry=fast
    )
    async with ActorSystem(middleware=[steps]) as system:
        for name in "abc":
            system.spawn(Plain, name, name=f"step-{name}")
        orchestrator = system.spawn(
            SagaOrchestrator,
            definition,
            MemorySagaLog(),
            listener=system.spawn(Recorder, finished),
            name="trips",
        )
        assert await orchestrator.ask(StartSaga("t1", {})) == "started"
        await eventually(lambda: len(finished) == 1)
    assert steps.seen[0] == ("before", "trip", "t1", "a", "action")
    assert [s[1:] for s in steps.seen if s[0] == "after"] == [
        ("a", "action", None),
        ("b", "action", None),
        ("c", "action", None),  # a rejection is the step's answer, not an error
        ("b", "compensation", None),
        ("a", "compensation", None),
    ]
