"""Task middleware: the steps around every attempt, as in dramatiq.

A :class:`TaskMiddleware` has ``before_process`` (may end the attempt with
:class:`~troupe.brokers.tasks.context.SkipTask`) and ``after_process`` (sees
the outcome; may change it). The defaults, in order: :class:`Cancellation`,
:class:`TimeLimits`, :class:`Retries`, :class:`Uniqueness`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
import traceback
from typing import TYPE_CHECKING

from dramatiq.errors import Retry

from troupe.backoff import Backoff

from .client import UNIQUE_KEY, UNIQUE_RELEASE, UNIQUE_RELEASE_DONE
from .context import Attempt, SkipTask, TaskCancelled

if TYPE_CHECKING:
    from .runner import Runner

logger = logging.getLogger(__name__)


class TaskMiddleware:
    """Hooks around every attempt; subclasses override what they need."""

    def before_process(self, runner: Runner, attempt: Attempt) -> None:
        """Before the handler runs; raise :class:`SkipTask` to ack without running."""

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        """After it ran (or failed, or was skipped)."""


class Cancellation(TaskMiddleware):
    """Skip a task whose id was cancelled; a cancelled running task is not retried."""

    def before_process(self, runner: Runner, attempt: Attempt) -> None:
        if attempt.context.id in runner.cancelled:
            raise SkipTask("cancelled")

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        if isinstance(attempt.exception, TaskCancelled | concurrent.futures.CancelledError):
            attempt.outcome = "cancelled"
            attempt.exception = None


class TimeLimits(TaskMiddleware):
    """Report a sync handler that finished past its limit (async ones are interrupted)."""

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        ctx = attempt.context
        if (
            attempt.exception is None
            and attempt.outcome == "done"
            and attempt.elapsed > ctx.time_limit
        ):
            attempt.outcome = "overran"
            logger.warning(
                "task %s %s took %.3f s, past its time limit of %.3f s (a sync handler is "
                "not interrupted; make it async def to have it cancelled)",
                ctx.task,
                ctx.id,
                attempt.elapsed,
                ctx.time_limit,
            )


class Retries(TaskMiddleware):
    """dramatiq's retry rules: ``retries`` counted in the message, ``max_retries``,
    ``min_backoff``/``max_backoff`` (ms) from the message, then the task, then the pool;
    the delay from :class:`~troupe.Backoff`; past the limit, dead-letter (the record's
    ``retries``: how many retries ran, as in dramatiq's dead-letter queue)."""

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        exc = attempt.exception
        if exc is None or attempt.outcome != "done":
            return
        options = attempt.job.proxy.options
        definition = attempt.definition
        retries = int(options.get("retries", 0))
        options["retries"] = retries + 1
        options["traceback"] = "".join(traceback.format_exception(exc, limit=30))[-8000:]
        options["requeue_timestamp"] = int(time.time() * 1000)
        max_retries = options.get("max_retries")
        if max_retries is None:
            max_retries = (
                definition.max_retries
                if definition and definition.max_retries is not None
                else runner.max_retries
            )
        if definition is None or retries >= int(max_retries):
            # dramatiq's dead-letter record carries the retries done (its brokers keep
            # the body of the last enqueued attempt), not this attempt's increment
            options["retries"] = retries
            attempt.outcome = "dead"
            attempt.dead = True
            return
        attempt.outcome = "retried"
        if isinstance(exc, Retry) and exc.delay is not None:
            attempt.retry_delay = exc.delay / 1000
            return
        base = runner.backoff
        low = options.get("min_backoff")
        high = options.get("max_backoff")
        initial = (
            low / 1000
            if low is not None
            else (definition.min_backoff if definition.min_backoff is not None else base.initial)
        )
        maximum = (
            high / 1000
            if high is not None
            else (definition.max_backoff if definition.max_backoff is not None else base.maximum)
        )
        backoff = Backoff(
            initial=initial,
            maximum=max(initial, maximum),
            multiplier=base.multiplier,
            jitter=base.jitter,
        )
        attempt.retry_delay = backoff.delay(retries)


class Uniqueness(TaskMiddleware):
    """A unique task's lock lasts its ``unique_for`` window; it is released early when the
    task is cancelled, succeeds with ``release_unique_on_success``, or dead-letters with
    ``release_unique_on_failure``."""

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        options = attempt.job.proxy.options
        key = options.get(UNIQUE_KEY)
        if key is None:
            return
        outcome = attempt.outcome
        if (
            outcome == "cancelled"
            or (attempt.dead and options.get(UNIQUE_RELEASE))
            or (outcome in ("done", "overran") and options.get(UNIQUE_RELEASE_DONE))
        ):
            runner.control.release(key, attempt.context.id)


def default_middleware() -> list[TaskMiddleware]:
    """Cancellation, TimeLimits, Retries, Uniqueness."""
    return [Cancellation(), TimeLimits(), Retries(), Uniqueness()]
