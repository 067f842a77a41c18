"""One attempt of one task: cancel check, run under its time limit, then ack, retry or
dead-letter — the steps are middleware, as in dramatiq.

A :class:`TaskMiddleware` has ``before_process`` (may end the attempt with
:class:`SkipTask`) and ``after_process`` (sees the outcome; may change it).
The defaults, in order: :class:`Cancellation`, :class:`TimeLimits`,
:class:`Retries`, :class:`Uniqueness`. Handlers read their own task through
:func:`current_task`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.common import xq_name
from dramatiq.errors import Retry

from troupe.backoff import Backoff, Jitter
from troupe.errors import TroupeError

from .client import UNIQUE_KEY, UNIQUE_RELEASE
from .control import ControlStore
from .definitions import DEFAULT_MAX_RETRIES, DEFAULT_TIME_LIMIT, TaskDef, TaskRegistry
from .intake import Job
from .metrics import UNKNOWN, TaskStats
from .transport import Outage, connection_errors

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = connection_errors()

#: dramatiq's retry backoff: 15 s doubling up to 7 days; messages' min/max_backoff override it.
DEFAULT_BACKOFF = Backoff(initial=15.0, maximum=7 * 86400.0, jitter=Jitter.EQUAL)


class TaskCancelled(TroupeError):
    """The task was cancelled by id (raise it from a sync handler that noticed)."""


class TimeLimitExceeded(TroupeError):
    """An async task ran past its time limit and was interrupted."""


class SkipTask(Exception):
    """Raised by ``before_process``: ack the message without running it."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class TaskContext:
    """The running task as its handler sees it (``current_task()``): ``id``, ``task``
    (its type), ``queue``, ``retries`` so far, the message ``options``, ``time_limit``."""

    __slots__ = ("cancelled", "future", "id", "options", "queue", "retries", "task", "time_limit")

    def __init__(
        self,
        id: str,
        task: str,
        queue: str,
        retries: int,
        options: dict[str, Any],
        time_limit: float,
    ) -> None:
        self.id = id
        self.task = task
        self.queue = queue
        self.retries = retries
        self.options = options
        self.time_limit = time_limit
        #: True once the task was cancelled; sync handlers check it to stop early.
        self.cancelled = False
        self.future: concurrent.futures.Future[Any] | None = None

    def cancel(self) -> None:
        """Interrupt an async handler; flag a sync one (it stops when it checks)."""
        self.cancelled = True
        if self.future is not None:
            self.future.cancel()

    def __repr__(self) -> str:
        return f"<TaskContext {self.task} {self.id} queue={self.queue} retries={self.retries}>"


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "troupe_task", default=None
)


def current_task() -> TaskContext | None:
    """The task the calling handler runs for (None outside a task)."""
    return _current.get()


class Attempt:
    """One attempt in progress: what the middleware sees and decides. ``outcome`` is
    one of :data:`~troupe.brokers.tasks.metrics.OUTCOMES`; ``retry_delay`` (seconds)
    means enqueue again after that long; ``dead`` means dead-letter."""

    __slots__ = (
        "context",
        "dead",
        "definition",
        "elapsed",
        "exception",
        "job",
        "outcome",
        "retry_delay",
    )

    def __init__(self, job: Job, context: TaskContext, definition: TaskDef | None) -> None:
        self.job = job
        self.context = context
        self.definition = definition
        self.outcome = "done"
        self.exception: BaseException | None = None
        self.elapsed = 0.0
        self.retry_delay: float | None = None
        self.dead = False


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
    the delay from :class:`~troupe.Backoff`; past the limit, dead-letter."""

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
    task is cancelled, or dead-letters with ``release_unique_on_failure``."""

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        options = attempt.job.proxy.options
        key = options.get(UNIQUE_KEY)
        if key is None:
            return
        if attempt.outcome == "cancelled" or (attempt.dead and options.get(UNIQUE_RELEASE)):
            runner.control.release(key, attempt.context.id)


def default_middleware() -> list[TaskMiddleware]:
    """Cancellation, TimeLimits, Retries, Uniqueness."""
    return [Cancellation(), TimeLimits(), Retries(), Uniqueness()]


class Runner:
    """Runs attempts for a pool's workers (any worker thread; async handlers on ``loop``)."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        registry: TaskRegistry,
        control: ControlStore,
        stats: TaskStats,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        time_limit: float = DEFAULT_TIME_LIMIT,
        backoff: Backoff = DEFAULT_BACKOFF,
        middleware: Sequence[TaskMiddleware] | None = None,
        settle_timeout: float = 30.0,
    ) -> None:
        self.broker = broker
        self.settle_timeout = settle_timeout
        self.registry = registry
        self.control = control
        self.stats = stats
        self.max_retries = max_retries
        self.time_limit = time_limit
        self.backoff = backoff
        self.middleware = list(middleware) if middleware is not None else default_middleware()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cancelled: frozenset[str] = frozenset()
        self._running: dict[str, TaskContext] = {}
        self._lock = threading.Lock()

    # -- cancellation of running tasks (called by the pool's watcher) ------------------------

    def running_ids(self) -> list[str]:
        """Ids of the tasks running now."""
        with self._lock:
            return list(self._running)

    def cancel_running(self, ids: set[str] | frozenset[str]) -> int:
        """Cancel the running tasks among ``ids``; how many there were."""
        with self._lock:
            hits = [ctx for task_id, ctx in self._running.items() if task_id in ids]
        for ctx in hits:
            if not ctx.cancelled:
                logger.info("cancelling running task %s %s", ctx.task, ctx.id)
                ctx.cancel()
        return len(hits)

    # -- one attempt -------------------------------------------------------------------------

    def process(self, job: Job) -> str:
        """Run one message to its end (ack, retry or dead-letter); its outcome."""
        proxy = job.proxy
        options = proxy.options
        definition = self.registry.find(proxy.actor_name)
        limit_ms = options.get("time_limit")
        if limit_ms is not None:
            limit = limit_ms / 1000
        elif definition is not None and definition.time_limit is not None:
            limit = definition.time_limit
        else:
            limit = self.time_limit
        ctx = TaskContext(
            proxy.message_id,
            proxy.actor_name,
            job.queue,
            int(options.get("retries", 0)),
            options,
            limit,
        )
        attempt = Attempt(job, ctx, definition)
        middleware = self.middleware
        start = time.perf_counter()
        try:
            for m in middleware:
                m.before_process(self, attempt)
            if definition is None:
                raise LookupError(
                    f"no task named {proxy.actor_name!r} in this pool's registry; "
                    "dead-lettered (as a dramatiq worker does for an unknown actor)"
                )
            self._run(ctx, definition, proxy.args, proxy.kwargs)
        except SkipTask as skip:
            attempt.outcome = skip.outcome
        except BaseException as exc:  # the task's failure: retry or dead-letter
            attempt.exception = exc
        attempt.elapsed = time.perf_counter() - start
        for m in middleware:
            try:
                m.after_process(self, attempt)
            except Exception:
                logger.exception("task middleware %r failed after %s", m, ctx.id)
        self._settle(attempt)
        task_label = definition.name if definition is not None else UNKNOWN
        self.stats.count(task_label, job.queue, attempt.outcome, attempt.elapsed)
        return attempt.outcome

    def _run(self, ctx: TaskContext, definition: TaskDef, args: Any, kwargs: Any) -> Any:
        with self._lock:
            self._running[ctx.id] = ctx
        try:
            if definition.is_async:
                loop = self.loop
                if loop is None:
                    raise RuntimeError("the pool's event loop is not known yet")
                future = asyncio.run_coroutine_threadsafe(
                    _run_async(ctx, definition, args, kwargs), loop
                )
                ctx.future = future
                if ctx.cancelled:
                    future.cancel()
                return future.result()
            token = _current.set(ctx)
            try:
                return definition.fn(*args, **kwargs)
            finally:
                _current.reset(token)
        finally:
            with self._lock:
                self._running.pop(ctx.id, None)

    def _settle(self, attempt: Attempt) -> None:
        """Ack, retry or dead-letter; broker calls are retried through a connection loss
        for up to ``settle_timeout`` seconds (then the broker redelivers the message)."""
        deadline = time.monotonic() + self.settle_timeout
        outage = Outage(f"task {attempt.context.task} {attempt.context.id}")
        while True:
            try:
                self._settle_once(attempt)
                outage.recovered()
                return
            except CONNECTION_ERRORS as exc:
                delay = outage.failed(exc)
                if time.monotonic() + delay > deadline:
                    logger.error(
                        "task %s %s: could not settle it within %s s (%s); the broker "
                        "delivers it again",
                        attempt.context.task,
                        attempt.context.id,
                        self.settle_timeout,
                        exc,
                    )
                    return
                time.sleep(delay)

    def _settle_once(self, attempt: Attempt) -> None:
        job = attempt.job
        proxy = job.proxy
        exc = attempt.exception
        if attempt.dead:
            if not proxy.failed:
                logger.warning(
                    "task %s %s failed for good after %s retries: %r; moved to the "
                    "dead-letter queue",
                    attempt.context.task,
                    attempt.context.id,
                    proxy.options.get("retries", 0) - 1,
                    exc,
                )
                if exc is not None:
                    proxy.stuff_exception(exc)
                proxy.fail()
            if _dead_letter_with_reason(self.broker, job.queue, proxy):
                job.consumer.ack(proxy)  # the copy with its reason is in the XQ already
            else:
                job.consumer.nack(proxy)
            return
        if attempt.retry_delay is not None:
            logger.info(
                "task %s %s failed (%r); retry %s in %.3f s",
                attempt.context.task,
                attempt.context.id,
                exc,
                proxy.options.get("retries"),
                attempt.retry_delay,
            )
            retry = proxy.copy(options={"eta": None})
            retry.options.pop("eta", None)
            self.broker.enqueue(retry, delay=max(1, int(attempt.retry_delay * 1000)))
            attempt.retry_delay = None  # enqueued: a retried settle only acks
        elif exc is not None:
            logger.error(
                "task %s %s failed in middleware: %r", attempt.context.task, attempt.context.id, exc
            )
        job.consumer.ack(proxy)


def _dead_letter_with_reason(broker: dramatiq.Broker, queue: str, proxy: Any) -> bool:
    """Keep the failure (retries, traceback) with a dead-lettered message, which a plain
    nack drops: on Redis, rewrite the stored message before the nack moves it to the
    dead-letter set (False: nack it); on RabbitMQ, publish the updated copy to the
    ``.XQ`` queue (True: ack the original). The stub keeps the proxy itself (False)."""
    redis_id = proxy.options.get("redis_message_id")
    client = getattr(broker, "client", None)
    if redis_id is not None and client is not None:
        namespace = getattr(broker, "namespace", "dramatiq")
        client.hset(f"{namespace}:{queue}.msgs", redis_id, proxy.copy().encode())
        return False
    if type(broker).__name__ == "RabbitmqBroker":
        import pika

        channel = broker.channel  # type: ignore[attr-defined]  # this thread's channel
        properties = pika.BasicProperties(delivery_mode=2)
        channel.basic_publish("", xq_name(queue), proxy.copy().encode(), properties)
        return True
    return False


async def _run_async(ctx: TaskContext, definition: TaskDef, args: Any, kwargs: Any) -> Any:
    _current.set(ctx)  # this coroutine runs in a task of its own: its own context
    try:
        async with asyncio.timeout(ctx.time_limit):
            return await definition.fn(*args, **kwargs)
    except TimeoutError:
        raise TimeLimitExceeded(
            f"task {ctx.task} {ctx.id} ran past its time limit of {ctx.time_limit} s; interrupted"
        ) from None
