"""One attempt of one task: the middleware, the handler under its time limit, then ack,
retry or dead-letter (see :mod:`troupe.brokers.tasks.middleware`). Handlers read their
own task through :func:`~troupe.brokers.tasks.context.current_task`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.common import xq_name

from troupe.backoff import Backoff, Jitter

from .context import Attempt, SkipTask, TaskContext, TimeLimitExceeded, _current
from .control import ControlStore
from .definitions import DEFAULT_MAX_RETRIES, DEFAULT_TIME_LIMIT, TaskDef, TaskRegistry
from .intake import Job
from .metrics import UNKNOWN, TaskStats
from .middleware import TaskMiddleware, default_middleware
from .transport import Outage, connection_errors

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = connection_errors()

#: dramatiq's retry backoff: 15 s doubling up to 7 days; messages' min/max_backoff override it.
DEFAULT_BACKOFF = Backoff(initial=15.0, maximum=7 * 86400.0, jitter=Jitter.EQUAL)


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

    def running(self) -> list[TaskContext]:
        """The tasks running now."""
        with self._lock:
            return list(self._running.values())

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
            attempt.result = self._run(ctx, definition, proxy.args, proxy.kwargs)
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
                    proxy.options.get("retries", 0),
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
