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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.backoff import Backoff, BackoffState
from troupe.errors import ConfigError
from troupe.ref import ActorRef

from .saga_definition import (
    GetSaga,
    GetSagaStats,
    ParkedSagas,
    Rejected,
    RetryParked,
    SagaDefinition,
    SagaFinished,
    SagaStats,
    StartSaga,
    Step,
    StepAction,
    StepCompensation,
    StepRejected,
)
from .saga_log import UNFINISHED, MemorySagaLog, SagaFenced, SagaLog, SagaRecord, SagaStatus
from .saga_run import SagaRun

if TYPE_CHECKING:
    from troupe import Child
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)


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
            SagaRun,
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
class _Tick:
    """Renew the orchestrator's lease and look for sagas to take over."""


__all__ = [
    "GetSaga",
    "GetSagaStats",
    "ParkedSagas",
    "Rejected",
    "RetryParked",
    "SagaDefinition",
    "SagaFinished",
    "SagaOrchestrator",
    "SagaStats",
    "SagaStep",
    "StartSaga",
    "Step",
    "StepAction",
    "StepCompensation",
    "StepRejected",
]
