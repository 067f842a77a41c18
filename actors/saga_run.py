"""One running saga: the actor that drives a saga's record step by step.

A :class:`SagaRun` sends one action or compensation per message, writes the
record to the saga log before and after each (every write fenced: a refused
one means another orchestrator owns the saga now, and the run stops), logs
every retry, timeout and compensation once, and ends by writing the outcome
with the final state (the outbox) and asking the listener until it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.errors import AskTimeout
from troupe.ref import ActorRef

from .remote_ref import RemoteRef
from .saga_definition import (
    Rejected,
    SagaDefinition,
    SagaFinished,
    SagaStats,
    Step,
    StepAction,
    StepCompensation,
)
from .saga_log import SagaFenced, SagaLog, SagaRecord, SagaStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Advance:
    token: object


class SagaRun(Actor):
    """Drives one saga, one action or compensation per message, persisting each change
    (the orchestrator spawns one per running saga; not meant to be spawned by hand).

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
            reply = await self._ask_step(
                record,
                target,
                StepAction(record.saga_id, step.name, dict(record.data)),
                step,
                "action",
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

    async def _ask_step(
        self,
        record: SagaRecord,
        target: ActorRef | RemoteRef,
        message: Any,
        step: Step,
        action: str,
    ) -> Any:
        """Ask ``target`` for a step's action or compensation, inside the saga-step hooks."""
        chain = self.system.middleware
        if not (chain.before_saga_step or chain.after_saga_step):
            return await target.ask(message, timeout=step.timeout)
        saga, run_id = record.saga, record.saga_id
        for hook in chain.before_saga_step:
            hook(saga, run_id, step.name, action)
        try:
            reply = await target.ask(message, timeout=step.timeout)
        except Exception as exc:
            for after in chain.after_saga_step:
                after(saga, run_id, step.name, action, exc)
            raise
        for after in chain.after_saga_step:
            after(saga, run_id, step.name, action, None)
        return reply

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
            await self._ask_step(
                record,
                target,
                StepCompensation(record.saga_id, step.name, dict(record.data)),
                step,
                "compensation",
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

    def _resolve(self, step: Step) -> ActorRef | RemoteRef:
        if isinstance(step.actor, str):
            return self.system.lookup(step.actor)
        return step.actor


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
