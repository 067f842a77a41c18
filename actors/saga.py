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

Several orchestrators may share one log (processes of a ``troupe run`` tree,
hosts). Each holds a lease in the log, renewed every ``lease / 3`` seconds, and
every saga names its owner and a fencing token: an orchestrator resumes its
own unfinished sagas on start and takes over another's only once that
owner's lease has run out; every write is a compare-and-set, so a stale
owner's write is refused and its run of the saga stops (see
:mod:`~troupe.actors.saga_log`). A step whose outcome is unknown is sent
again after a takeover, so actions and compensations must be idempotent by
saga id (and a compensation must tolerate an action that never happened).

The outcome is written with the final state (an outbox) and delivered to the
listener at least once: asked until its handler returns, and again by
whichever orchestrator resumes the saga after a crash. Listeners dedupe by
``SagaFinished.saga_id``. Every retry, timeout and compensation is logged
once with saga id, step and attempt.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import uuid
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.backoff import Backoff, BackoffState
from troupe.errors import AskTimeout, ConfigError
from troupe.ref import ActorRef

from .retry import Retry
from .saga_log import UNFINISHED, MemorySagaLog, SagaFenced, SagaLog, SagaRecord, SagaStatus

if TYPE_CHECKING:
    from troupe import Child
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
    :class:`SagaFinished` per saga that finishes (asked, ``listener_timeout``
    each time, until it returns). The orchestrator supervises its runs: a run
    that fails (say, the log is unreachable) restarts after ``run_backoff`` and
    reloads its record. ``lease`` (seconds) is how long this orchestrator's
    sagas stay its own without a renewal: after a crash, others take them over
    that much later.
    """

    def __init__(
        self,
        definition: SagaDefinition,
        log: SagaLog | None = None,
        *,
        listener: ActorRef | str | None = None,
        stats: SagaStats | None = None,
        run_backoff: Backoff | None = None,
        lease: float = 10.0,
        listener_timeout: float = 10.0,
    ) -> None:
        if not lease > 0:
            raise ConfigError("saga.lease", f"must be positive seconds, got {lease!r}")
        if not listener_timeout > 0:
            raise ConfigError(
                "saga.listener_timeout", f"must be positive seconds, got {listener_timeout!r}"
            )
        self.definition = definition
        self.lease = lease
        self.listener_timeout = listener_timeout
        # one owner id per system and actor name: a restarted orchestrator keeps its sagas
        owners = _OWNERS.setdefault(self.system, {})
        self.owner = owners.setdefault(
            self.name, f"{socket.gethostname()}:{os.getpid()}:{self.name}:{uuid.uuid4().hex[:8]}"
        )
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
        await self.log.renew(self.owner, self.lease)
        self.timers.every(self.lease / 3, _Tick(), key="lease")
        await self._resume(starting=True)

    async def on_stop(self) -> None:
        if self.system.is_closing:  # a clean shutdown hands the sagas over at once
            try:
                await self.log.release(self.owner)
            except Exception as exc:  # the lease then runs out by itself
                logger.warning(
                    "saga orchestrator %s could not release its lease: %r", self.name, exc
                )

    async def _tick(self) -> None:
        try:
            await self.log.renew(self.owner, self.lease)
            await self._resume(starting=False)
        except Exception as exc:
            logger.warning(
                "saga orchestrator %s: lease renewal or takeover failed: %r", self.name, exc
            )

    async def _resume(self, *, starting: bool) -> None:
        """Resume this orchestrator's unfinished sagas (on start) and take over those
        whose owner's lease ran out, outcomes still to deliver included."""
        name = self.definition.name
        found = await self.log.records(name, UNFINISHED) + await self.log.outbox(name)
        others = {r.owner for r in found if r.owner != self.owner}
        live = await self.log.live(others) if others else set()
        for record in found:
            if record.owner == self.owner:
                # only on start: later, a record read here may be older than its live run
                if starting:
                    self.stats.resumed += 1
                    self._log_resume("resuming", record)
                    self._spawn_run(record)
                continue
            if record.owner in live:
                continue
            taken = await self.log.take_over(record, self.owner)
            if taken is None:
                continue
            self.stats.resumed += 1
            self.stats.taken_over += 1
            self._log_resume(f"taking over from {record.owner or 'nobody'}", taken)
            self._spawn_run(taken)

    def _log_resume(self, how: str, record: SagaRecord) -> None:
        logger.info(
            "%s saga %s/%s (%s at step %d, version %d)",
            how,
            record.saga,
            record.saga_id,
            record.status,
            record.step,
            record.version,
        )

    async def receive(self, message: Any) -> Any:
        if isinstance(message, SagaFinished):
            return self._finished(message)
        if isinstance(message, _Tick):
            return await self._tick()
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
        record = SagaRecord(
            message.saga_id, self.definition.name, dict(message.data), owner=self.owner, fence=1
        )
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
        taken = await self.log.take_over(record, self.owner)
        if taken is None:  # moved on since we read it (another orchestrator retried it)
            return "not parked"
        taken.status = SagaStatus.COMPENSATING
        taken.attempts = taken.timeouts = 0
        taken.version += 1
        try:
            await self.log.save(taken)
        except SagaFenced:
            return "not parked"
        record = taken
        self.stats.needs_attention -= 1
        self._spawn_run(record)
        return "compensating"

    def on_child_failure(self, child: Child, exc: BaseException) -> None:
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
            self.listener,
            self.listener_timeout,
            self.run_backoff,
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
        # the run delivers the outcome to the listener itself (from the outbox)


_DEFAULTS: weakref.WeakKeyDictionary[ActorSystem, dict[str, tuple[MemorySagaLog, SagaStats]]] = (
    weakref.WeakKeyDictionary()
)
_OWNERS: weakref.WeakKeyDictionary[ActorSystem, dict[str, str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class _Advance:
    token: object


@dataclass(frozen=True, slots=True)
class _Tick:
    """Renew the orchestrator's lease and look for sagas to take over."""


class _SagaRun(Actor):
    """Drives one saga, one action or compensation per message, persisting each change.

    Every write is fenced (see :mod:`~troupe.actors.saga_log`): when one is
    refused, another orchestrator owns the saga now and this run stops.
    """

    def __init__(
        self,
        definition: SagaDefinition,
        log: SagaLog,
        record: SagaRecord,
        stats: SagaStats,
        orchestrator: ActorRef,
        listener: ActorRef | str | None = None,
        listener_timeout: float = 10.0,
        delivery_backoff: Backoff | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.definition = definition
        self.log = log
        self.record = record
        self.stats = stats
        self.listener = listener
        self.listener_timeout = listener_timeout
        self.delivery_backoff = delivery_backoff or Backoff(initial=0.05, maximum=5.0)
        self._deliveries = 0
        self._token = object()

    async def on_start(self) -> None:
        self._kick()

    async def on_restart(self, exc: BaseException) -> None:
        stored = await self.log.load(self.record.saga, self.record.saga_id)
        if stored is not None:
            if (stored.owner, stored.fence) != (self.record.owner, self.record.fence):
                self._fenced(SagaFenced(stored.saga, stored.saga_id, self.record.owner, 0))
                return
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
        try:
            if record.status is SagaStatus.RUNNING:
                await self._forward(record)
            elif record.status is SagaStatus.COMPENSATING:
                await self._compensate(record)
            else:
                await self._deliver(record)
        except SagaFenced as exc:
            self._fenced(exc)

    def _fenced(self, exc: SagaFenced) -> None:
        self.stats.fenced += 1
        logger.warning(
            "saga %s/%s: stopping this run, another orchestrator owns the saga now (%s)",
            self.record.saga,
            self.record.saga_id,
            exc,
        )
        self.ref.stop()

    async def _save(self, record: SagaRecord) -> None:
        record.version += 1
        await self.log.save(record)

    # forward ------------------------------------------------------------------------------

    async def _forward(self, record: SagaRecord) -> None:
        steps = self.definition.steps
        if record.step >= len(steps):
            await self._end(record, SagaStatus.COMPLETED)
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
            what = self._count_failure(record, step, exc, "action")
            if step.retry.should_retry(exc, record.attempts):
                self.stats.action_retries += 1
                delay = step.retry.delay(record.attempts)
                logger.warning(
                    "saga %s/%s step %s attempt %d/%d %s; retrying in %.3f s",
                    record.saga,
                    record.saga_id,
                    step.name,
                    record.attempts,
                    step.retry.max_attempts,
                    what,
                    delay,
                )
                await self._save(record)
                self._kick(delay)
                return
            logger.warning(
                "saga %s/%s step %s attempt %d/%d %s; giving up: compensating",
                record.saga,
                record.saga_id,
                step.name,
                record.attempts,
                step.retry.max_attempts,
                what,
            )
            await self._fail(
                record, step, f"{type(exc).__name__}: {exc}", _cause(record), uncertain=True
            )
            return
        if isinstance(reply, Rejected):
            await self._fail(record, step, reply.reason, "rejected", uncertain=False)
            return
        if record.attempts:
            logger.info(
                "saga %s/%s step %s succeeded on attempt %d",
                record.saga,
                record.saga_id,
                step.name,
                record.attempts + 1,
            )
        if isinstance(reply, dict):
            record.data.update(reply)
        record.done.append(step.name)
        record.step += 1
        record.step_started = False
        record.attempts = 0
        record.timeouts = 0
        await self._save(record)  # after: the step is done
        self._kick()

    def _count_failure(self, record: SagaRecord, step: Step, exc: Exception, kind: str) -> str:
        """Count a failed attempt (timeouts apart) and say what happened, for the log."""
        if isinstance(exc, AskTimeout):
            record.timeouts += 1
            if kind == "action":
                self.stats.step_timeouts += 1
            else:
                self.stats.compensation_timeouts += 1
            return f"timed out after {step.timeout:g} s"
        return f"failed: {type(exc).__name__}: {exc}"

    async def _fail(
        self, record: SagaRecord, step: Step, error: str, cause: str, *, uncertain: bool
    ) -> None:
        logger.info(
            "saga %s/%s failed at step %s (%s): %s; compensating",
            record.saga,
            record.saga_id,
            step.name,
            cause,
            error,
        )
        undo = list(record.done)
        if uncertain:  # the action may have taken effect before it failed or timed out
            undo.append(step.name)
        record.to_compensate = [
            name for name in reversed(undo) if self.definition.step(name).compensate
        ]
        record.status = SagaStatus.COMPENSATING
        record.failed_step = step.name
        record.error = error
        record.cause = cause
        record.step_started = False
        record.attempts = 0
        record.timeouts = 0
        await self._save(record)
        self._kick()

    # backward -----------------------------------------------------------------------------

    async def _compensate(self, record: SagaRecord) -> None:
        if not record.to_compensate:
            await self._end(record, SagaStatus.COMPENSATED)
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
            what = self._count_failure(record, step, exc, "compensation")
            if policy.should_retry(exc, record.attempts):
                self.stats.compensation_retries += 1
                delay = policy.delay(record.attempts)
                logger.warning(
                    "saga %s/%s compensation of %s attempt %d/%d %s; retrying in %.3f s",
                    record.saga,
                    record.saga_id,
                    step.name,
                    record.attempts,
                    policy.max_attempts,
                    what,
                    delay,
                )
                await self._save(record)
                self._kick(delay)
                return
            record.error = f"compensation of {step.name} failed: {type(exc).__name__}: {exc}"
            record.cause = _cause(record)
            logger.error(
                "saga %s/%s needs attention: %s (attempt %d/%d, %s)",
                record.saga,
                record.saga_id,
                record.error,
                record.attempts,
                policy.max_attempts,
                record.cause,
            )
            await self._end(record, SagaStatus.NEEDS_ATTENTION)
            return
        record.attempts += 1
        logger.info(
            "saga %s/%s compensated step %s (attempt %d)",
            record.saga,
            record.saga_id,
            step.name,
            record.attempts,
        )
        record.to_compensate.pop(0)
        record.compensated.append(step.name)
        record.attempts = 0
        record.timeouts = 0
        await self._save(record)
        self._kick()

    # the end: outcome in the log (the outbox), then to the listener ------------------------

    async def _end(self, record: SagaRecord, status: SagaStatus) -> None:
        record.status = status
        record.outcome_pending = self.listener is not None
        await self._save(record)  # the final state and the outcome to deliver, in one write
        self.orchestrator.tell(_outcome(record))  # counted once: this write succeeded once
        await self._deliver(record)

    async def _deliver(self, record: SagaRecord) -> None:
        """Hand the outcome to the listener until it acknowledges (its handler returned)."""
        if not record.outcome_pending:
            self.ref.stop()
            return
        listener = self.listener
        if isinstance(listener, str):
            listener = self.system.find(listener)
        try:
            if listener is None:
                raise LookupError(f"saga listener {self.listener!r} is not running")
            await listener.ask(_outcome(record), timeout=self.listener_timeout)
        except Exception as exc:
            self._deliveries += 1
            delay = self.delivery_backoff.delay(self._deliveries - 1)
            logger.warning(
                "saga %s/%s outcome delivery attempt %d failed (%s: %s); retrying in %.3f s",
                record.saga,
                record.saga_id,
                self._deliveries,
                type(exc).__name__,
                exc,
                delay,
            )
            self._kick(delay)
            return
        record.outcome_pending = False
        await self._save(record)  # acknowledged: out of the outbox
        self.ref.stop()

    # helpers ------------------------------------------------------------------------------

    def _resolve(self, step: Step) -> ActorRef:
        if isinstance(step.actor, ActorRef):
            return step.actor
        return self.system.lookup(step.actor)


def _cause(record: SagaRecord) -> str:
    """Why the attempts at a step were used up: failures, timeouts, or both."""
    if record.timeouts == 0:
        return "failures"
    if record.timeouts >= record.attempts:
        return "timeouts"
    return "failures and timeouts"


def _outcome(record: SagaRecord) -> SagaFinished:
    return SagaFinished(
        record.saga_id,
        record.status,
        dict(record.data),
        record.failed_step,
        record.error,
        record.cause,
    )
