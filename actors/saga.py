"""Sagas: a sequence of steps, each an actor with an action and a compensation.

:class:`SagaOrchestrator` is an actor. ``StartSaga(saga_id, data)`` creates the
saga's record in the :mod:`saga log <troupe.actors.saga_log>` (a second start
with the same id is a duplicate and runs nothing) and spawns a child that runs
it one step per message:

- before a step's action is sent, the record says so (``step_started``); after
  the reply it records the step as done, with the data the step returned
  merged into the saga's data;
- a failed action is retried by the step's :class:`~troupe.actors.retry.Retry`
  (a step that raises :class:`StepRejected` is not retried); then the saga
  compensates the done steps in reverse order;
- a compensation that fails is retried with backoff; once the compensation
  policy gives up, the saga is parked as ``needs_attention`` — counted in
  ``stats`` and listed by ``ParkedSagas()`` — never dropped silently;
- every action and compensation is an ``ask`` bounded by the step's timeout.

When an orchestrator starts (a new process, or after a restart) it resumes
every unfinished saga of its definition from the log: a step whose outcome is
unknown is sent again, so actions and compensations must be idempotent by
saga id (and a compensation must tolerate an action that never happened).
"""

from __future__ import annotations

import inspect
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.backoff import Backoff, BackoffState
from troupe.errors import ConfigError
from troupe.ref import ActorRef

from .retry import Retry
from .saga_log import UNFINISHED, MemorySagaLog, SagaLog, SagaRecord, SagaStatus

if TYPE_CHECKING:
    from troupe.cell import ActorCell
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)


# -- definition ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One saga step: the actor (name or ref) that does and undoes it.

    ``retry`` governs the action (a :class:`StepRejected` is never retried);
    ``timeout`` bounds each action and compensation; ``compensate`` False marks
    a step with nothing to undo.
    """

    name: str
    actor: str | ActorRef
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


@dataclass(frozen=True, slots=True)
class StartSaga:
    """Ask the orchestrator to run a saga; the reply is ``"started"`` or the existing status."""

    saga_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepAction:
    """Sent (asked) to a step actor: do your part of saga ``saga_id``."""

    saga_id: str
    step: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StepCompensation:
    """Sent (asked) to a step actor: undo your part of saga ``saga_id``."""

    saga_id: str
    step: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A step's reply meaning: refused for a business reason; do not retry, compensate."""

    reason: str


@dataclass(frozen=True, slots=True)
class SagaFinished:
    """Sent to the orchestrator's listener when a saga completes, compensates or parks."""

    saga_id: str
    status: SagaStatus
    data: dict[str, Any]
    failed_step: str | None = None
    error: str | None = None


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


# -- steps --------------------------------------------------------------------------------


class SagaStep(Actor):
    """Base class of step actors: define ``action`` and ``compensate`` (def or async def).

    ``action(saga_id, data)`` returns a dict merged into the saga's data (or
    None); raising :class:`StepRejected` refuses the step. ``compensate`` undoes
    it and must be a no-op when the action never happened.
    """

    def action(self, saga_id: str, data: dict[str, Any]) -> Any:
        """Do this step for ``saga_id``."""
        raise NotImplementedError(f"{type(self).__name__} must define action(saga_id, data)")

    def compensate(self, saga_id: str, data: dict[str, Any]) -> Any:
        """Undo this step for ``saga_id`` (idempotent)."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, StepAction):
            try:
                result = self.action(message.saga_id, message.data)
                if inspect.isawaitable(result):
                    result = await result
            except StepRejected as exc:
                return Rejected(str(exc) or type(exc).__name__)
            return result
        if isinstance(message, StepCompensation):
            result = self.compensate(message.saga_id, message.data)
            if inspect.isawaitable(result):
                await result
            return None
        return self.on_other(message)

    def on_other(self, message: Any) -> Any:
        """Messages other than step actions and compensations (override to use them)."""
        raise TypeError(f"{type(self).__name__} got an unexpected message {message!r}")


# -- orchestrator ---------------------------------------------------------------------------


class SagaOrchestrator(Actor):
    """Runs sagas of one definition, each in a child actor; resumes unfinished ones on start.

    ``log`` defaults to a :class:`~troupe.actors.saga_log.MemorySagaLog` (one per
    system and orchestrator name, so it survives restarts of the orchestrator);
    ``listener`` (a ref, or an actor name looked up each time) gets a
    :class:`SagaFinished` per saga that finishes. The orchestrator supervises
    its runs: a run that fails (say, the log is unreachable) restarts after
    ``run_backoff`` and reloads its record.
    """

    def __init__(
        self,
        definition: SagaDefinition,
        log: SagaLog | None = None,
        *,
        listener: ActorRef | str | None = None,
        stats: SagaStats | None = None,
        run_backoff: Backoff | None = None,
    ) -> None:
        self.definition = definition
        if log is None or stats is None:
            # defaults outlive restarts of this actor: kept per system and actor name
            kept = _DEFAULTS.setdefault(self.system, {})
            default_log, default_stats = kept.setdefault(self.name, (MemorySagaLog(), SagaStats()))
            log = default_log if log is None else log
            stats = default_stats if stats is None else stats
        self.log: SagaLog = log
        self.listener = listener
        self.stats = stats
        self.run_backoff = run_backoff or Backoff(initial=0.05, maximum=5.0, jitter="equal")
        self._backoffs: dict[str, BackoffState] = {}

    async def on_start(self) -> None:
        for record in await self.log.records(self.definition.name, UNFINISHED):
            self.stats.resumed += 1
            logger.info(
                "resuming saga %s/%s (%s at step %d)",
                record.saga,
                record.saga_id,
                record.status,
                record.step,
            )
            self._spawn_run(record)

    async def receive(self, message: Any) -> Any:
        if isinstance(message, SagaFinished):
            return self._finished(message)
        if isinstance(message, StartSaga):
            return await self._start(message)
        if isinstance(message, GetSaga):
            return await self.log.load(self.definition.name, message.saga_id)
        if isinstance(message, ParkedSagas):
            return await self.log.records(self.definition.name, [SagaStatus.NEEDS_ATTENTION])
        if isinstance(message, RetryParked):
            return await self._retry_parked(message.saga_id)
        if isinstance(message, GetSagaStats):
            return SagaStats(**vars(self.stats))
        raise TypeError(f"saga orchestrator {self.name!r} got an unexpected message {message!r}")

    async def _start(self, message: StartSaga) -> str:
        record = SagaRecord(message.saga_id, self.definition.name, dict(message.data))
        if not await self.log.create(record):
            self.stats.duplicates += 1
            existing = await self.log.load(self.definition.name, message.saga_id)
            return existing.status.value if existing is not None else "unknown"
        self.stats.started += 1
        self._spawn_run(record)
        return "started"

    async def _retry_parked(self, saga_id: str) -> str:
        record = await self.log.load(self.definition.name, saga_id)
        if record is None or record.status is not SagaStatus.NEEDS_ATTENTION:
            return "not parked"
        record.status = SagaStatus.COMPENSATING
        record.attempts = 0
        record.version += 1
        await self.log.save(record)
        self.stats.needs_attention -= 1
        self._spawn_run(record)
        return "compensating"

    def on_child_failure(self, child: ActorCell, exc: BaseException) -> None:
        """A saga run failed: restart it after a backoff delay (it resumes from the log)."""
        state = self._backoffs.get(child.name)
        if state is None:
            state = self._backoffs[child.name] = BackoffState(self.run_backoff)
        delay = state.next_delay(self.system.clock.now())
        logger.warning("saga run %s failed (%r); restarting in %.3f s", child.name, exc, delay)
        child.restart(delay)

    def _spawn_run(self, record: SagaRecord) -> None:
        name = f"{self.name}/{record.saga_id}"
        existing = self.system.find(name)
        if existing is not None and existing.is_alive:
            return
        self.spawn(
            _SagaRun,
            self.definition,
            self.log,
            record,
            self.stats,
            self.ref,
            name=name,
            metrics_label=f"{self.name}-run",  # runs share one metrics group: ids are no labels
        )

    def _finished(self, message: SagaFinished) -> None:
        if message.status is SagaStatus.COMPLETED:
            self.stats.completed += 1
        elif message.status is SagaStatus.COMPENSATED:
            self.stats.compensated += 1
        else:
            self.stats.needs_attention += 1
        self._backoffs.pop(f"{self.name}/{message.saga_id}", None)
        listener = self.listener
        if isinstance(listener, str):
            found = self.system.find(listener)
            if found is None:
                self.system.dead_letters.publish(message, listener, "saga listener not running")
                return
            listener = found
        if listener is not None:
            listener.tell(message)


_DEFAULTS: weakref.WeakKeyDictionary[ActorSystem, dict[str, tuple[MemorySagaLog, SagaStats]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class _Advance:
    token: object


class _SagaRun(Actor):
    """Drives one saga, one action or compensation per message, persisting each change."""

    def __init__(
        self,
        definition: SagaDefinition,
        log: SagaLog,
        record: SagaRecord,
        stats: SagaStats,
        orchestrator: ActorRef,
    ) -> None:
        self.orchestrator = orchestrator
        self.definition = definition
        self.log = log
        self.record = record
        self.stats = stats
        self._token = object()

    async def on_start(self) -> None:
        self._kick()

    async def on_restart(self, exc: BaseException) -> None:
        stored = await self.log.load(self.record.saga, self.record.saga_id)
        if stored is not None:
            self.record = stored
        self._kick()

    def _kick(self, delay: float = 0.0) -> None:
        self._token = object()
        if delay > 0:
            self.timers.once(delay, _Advance(self._token), key="advance")
        else:
            self.ref.tell(_Advance(self._token))

    async def receive(self, message: Any) -> None:
        if not isinstance(message, _Advance) or message.token is not self._token:
            return
        record = self.record
        if record.status is SagaStatus.RUNNING:
            await self._forward(record)
        elif record.status is SagaStatus.COMPENSATING:
            await self._compensate(record)
        else:
            self._finish(record)

    async def _save(self, record: SagaRecord) -> None:
        record.version += 1
        await self.log.save(record)

    # forward ------------------------------------------------------------------------------

    async def _forward(self, record: SagaRecord) -> None:
        steps = self.definition.steps
        if record.step >= len(steps):
            record.status = SagaStatus.COMPLETED
            await self._save(record)
            self._finish(record)
            return
        step = steps[record.step]
        if not record.step_started:
            record.step_started = True
            await self._save(record)  # before: the action may happen from now on
        try:
            target = self._resolve(step)
            reply = await target.ask(
                StepAction(record.saga_id, step.name, dict(record.data)), timeout=step.timeout
            )
        except Exception as exc:
            record.attempts += 1
            if step.retry.should_retry(exc, record.attempts):
                self.stats.action_retries += 1
                await self._save(record)
                self._kick(step.retry.delay(record.attempts))
                return
            await self._fail(record, step, f"{type(exc).__name__}: {exc}", uncertain=True)
            return
        if isinstance(reply, Rejected):
            await self._fail(record, step, reply.reason, uncertain=False)
            return
        if isinstance(reply, dict):
            record.data.update(reply)
        record.done.append(step.name)
        record.step += 1
        record.step_started = False
        record.attempts = 0
        await self._save(record)  # after: the step is done
        self._kick()

    async def _fail(self, record: SagaRecord, step: Step, error: str, *, uncertain: bool) -> None:
        logger.info("saga %s failed at step %s: %s", record.saga_id, step.name, error)
        undo = list(record.done)
        if uncertain:  # the action may have taken effect before it failed or timed out
            undo.append(step.name)
        record.to_compensate = [
            name for name in reversed(undo) if self.definition.step(name).compensate
        ]
        record.status = SagaStatus.COMPENSATING
        record.failed_step = step.name
        record.error = error
        record.step_started = False
        record.attempts = 0
        await self._save(record)
        self._kick()

    # backward -----------------------------------------------------------------------------

    async def _compensate(self, record: SagaRecord) -> None:
        if not record.to_compensate:
            record.status = SagaStatus.COMPENSATED
            await self._save(record)
            self._finish(record)
            return
        step = self.definition.step(record.to_compensate[0])
        policy = self.definition.compensation_retry
        try:
            target = self._resolve(step)
            await target.ask(
                StepCompensation(record.saga_id, step.name, dict(record.data)),
                timeout=step.timeout,
            )
        except Exception as exc:
            record.attempts += 1
            if policy.should_retry(exc, record.attempts):
                self.stats.compensation_retries += 1
                await self._save(record)
                self._kick(policy.delay(record.attempts))
                return
            record.status = SagaStatus.NEEDS_ATTENTION
            record.error = f"compensation of {step.name} failed: {type(exc).__name__}: {exc}"
            await self._save(record)
            logger.error(
                "saga %s/%s needs attention: %s (after %d attempts)",
                record.saga,
                record.saga_id,
                record.error,
                record.attempts,
            )
            self._finish(record)
            return
        record.to_compensate.pop(0)
        record.compensated.append(step.name)
        record.attempts = 0
        await self._save(record)
        self._kick()

    # helpers ------------------------------------------------------------------------------

    def _resolve(self, step: Step) -> ActorRef:
        if isinstance(step.actor, ActorRef):
            return step.actor
        return self.system.lookup(step.actor)

    def _finish(self, record: SagaRecord) -> None:
        self.orchestrator.tell(
            SagaFinished(
                record.saga_id, record.status, dict(record.data), record.failed_step, record.error
            )
        )
        self.ref.stop()
