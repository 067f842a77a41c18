"""Saga definitions and messages: the steps, what the orchestrator and steps exchange,
and the orchestrator's counters. Re-exported by :mod:`troupe.actors.saga`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from troupe.errors import ConfigError
from troupe.ref import ActorRef

from .remote_ref import RemoteRef
from .retry import Retry
from .saga_log import SagaStatus
from .wire_types import wire_type

logger = logging.getLogger(__name__)

# -- definition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One saga step: the actor (name or ref, a remote ref too) that does and undoes it.

    ``retry`` governs the action (a :class:`StepRejected` is never retried);
    ``timeout`` bounds each action and compensation; ``compensate`` False marks
    a step with nothing to undo.
    """

    name: str
    actor: str | ActorRef | RemoteRef
    timeout: float = 5.0
    retry: Retry = field(default_factory=lambda: Retry(max_attempts=3, initial=0.05, maximum=1.0))
    compensate: bool = True


@dataclass(frozen=True)
class SagaDefinition:
    """A named, ordered list of steps and the retry policy of their compensations."""

    name: str
    steps: tuple[Step, ...]
    compensation_retry: Retry = field(
        default_factory=lambda: Retry(max_attempts=5, initial=0.05, maximum=2.0)
    )

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("saga.steps", f"saga {self.name!r} needs at least one step")
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ConfigError("saga.steps", f"step names must be unique, got {names}")
        object.__setattr__(self, "steps", tuple(self.steps))

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"saga {self.name!r} has no step {name!r}")


# -- messages -----------------------------------------------------------------------------


@wire_type(name="troupe.StartSaga")  # saga steps may be remote actors
@dataclass(frozen=True, slots=True)
class StartSaga:
    """Ask the orchestrator to run a saga; the reply is ``"started"`` or the existing status."""

    saga_id: str
    data: dict[str, Any]


@wire_type(name="troupe.StepAction")  # saga steps may be remote actors
@dataclass(frozen=True, slots=True)
class StepAction:
    """Sent (asked) to a step actor: do your part of saga ``saga_id``."""

    saga_id: str
    step: str
    data: dict[str, Any]


@wire_type(name="troupe.StepCompensation")  # saga steps may be remote actors
@dataclass(frozen=True, slots=True)
class StepCompensation:
    """Sent (asked) to a step actor: undo your part of saga ``saga_id``."""

    saga_id: str
    step: str
    data: dict[str, Any]


@wire_type(name="troupe.Rejected")  # saga steps may be remote actors
@dataclass(frozen=True, slots=True)
class Rejected:
    """A step's reply meaning: refused for a business reason; do not retry, compensate."""

    reason: str


@wire_type(name="troupe.SagaFinished")  # saga steps may be remote actors
@dataclass(frozen=True, slots=True)
class SagaFinished:
    """Asked of the orchestrator's listener when a saga completes, compensates or parks.

    Delivered at least once (again after a crash, until the listener's handler
    returns): dedupe by ``saga_id``. ``cause`` says why a failed saga gave up:
    ``rejected``, or its attempts used up by ``failures``, ``timeouts`` or
    ``failures and timeouts``.
    """

    saga_id: str
    status: SagaStatus
    data: dict[str, Any]
    failed_step: str | None = None
    error: str | None = None
    cause: str | None = None


@dataclass(frozen=True, slots=True)
class GetSaga:
    """Ask for the current record of a saga (None when unknown)."""

    saga_id: str


@dataclass(frozen=True, slots=True)
class ParkedSagas:
    """Ask for every saga that needs attention."""


@dataclass(frozen=True, slots=True)
class RetryParked:
    """Compensate a parked saga again (after a human fixed the cause)."""

    saga_id: str


@dataclass(frozen=True, slots=True)
class GetSagaStats:
    """Ask for a copy of the orchestrator's :class:`SagaStats`."""


class StepRejected(Exception):
    """Raise in a step's action to refuse it (card declined, out of stock)."""


@dataclass
class SagaStats:
    """Counters of one orchestrator (since it started)."""

    started: int = 0
    duplicates: int = 0
    resumed: int = 0
    completed: int = 0
    compensated: int = 0
    needs_attention: int = 0
    action_retries: int = 0
    compensation_retries: int = 0
    step_timeouts: int = 0
    compensation_timeouts: int = 0
    taken_over: int = 0
    fenced: int = 0
