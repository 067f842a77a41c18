"""A running task as its handler and the middleware see it: context, attempt, signals.

>>> current_task() is None        # outside a task
True
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import time
from typing import Any

from troupe.errors import TroupeError

from .definitions import TaskDef
from .intake import Job

logger = logging.getLogger(__name__)


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
    (its type), ``queue``, ``retries`` so far, the message ``options``, ``time_limit``,
    ``started`` (epoch seconds)."""

    __slots__ = (
        "cancelled",
        "future",
        "id",
        "options",
        "queue",
        "retries",
        "started",
        "task",
        "time_limit",
    )

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
        self.started = time.time()
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
    one of :data:`~troupe.brokers.tasks.metrics.OUTCOMES`; ``result`` is what the handler
    returned; ``retry_delay`` (seconds)
    means enqueue again after that long; ``dead`` means dead-letter."""

    __slots__ = (
        "context",
        "dead",
        "definition",
        "elapsed",
        "exception",
        "job",
        "outcome",
        "result",
        "retry_delay",
    )

    def __init__(self, job: Job, context: TaskContext, definition: TaskDef | None) -> None:
        self.job = job
        self.context = context
        self.definition = definition
        self.outcome = "done"
        self.exception: BaseException | None = None
        self.result: Any = None
        self.elapsed = 0.0
        self.retry_delay: float | None = None
        self.dead = False
