"""Enqueue tasks as dramatiq messages: options, schedule, uniqueness, task ids.

>>> from troupe.brokers.tasks import TaskClient, open_broker
>>> client = TaskClient(open_broker("stub://doc-client"))
>>> info = client.enqueue("send_email", "a@example.com", queue="critical", max_retries=3)
>>> info.queue, info.message.options["max_retries"]
('critical', 3)

Options travel in the message in dramatiq's own keys (``max_retries``,
``min_backoff``/``max_backoff``/``time_limit`` in milliseconds, ``eta``), so
a stock dramatiq worker honours them; troupe's uniqueness keys are ignored there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
from dramatiq import Message

from troupe.errors import ConfigError, TroupeError

from .catalog import register_queues
from .control import CANCEL_TTL, ControlStore, control_for
from .definitions import DEFAULT_QUEUE, TaskDef, TaskRegistry, check_retries, check_seconds
from .transport import declare, open_broker

logger = logging.getLogger(__name__)

#: Message option keys troupe adds (stock dramatiq ignores them).
UNIQUE_KEY = "troupe_unique"
UNIQUE_RELEASE = "troupe_unique_release"
UNIQUE_RELEASE_DONE = "troupe_unique_release_done"


class DuplicateTask(TroupeError):
    """An identical unique task was enqueued within its ``unique_for`` window."""


class TaskIdConflict(TroupeError):
    """A task with this ``task_id`` was enqueued already (within a day)."""


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What :meth:`TaskClient.enqueue` put on the broker."""

    id: str
    task: str
    queue: str
    eta: float | None  # epoch seconds; None: ready now
    message: Message[Any]


def unique_key(task: str, queue: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The lock key of a unique task: its type, queue and payload."""
    payload = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:32]
    return f"unique:{queue}:{task}:{digest}"


class TaskClient:
    """Puts tasks on a dramatiq broker (a URL or a broker; see :func:`open_broker`).

    ``registry`` supplies each named task's queue and defaults; without it (or
    for a name it does not know) the options given to :meth:`enqueue` apply.
    """

    def __init__(
        self,
        broker: str | dramatiq.Broker,
        registry: TaskRegistry | None = None,
        *,
        control: ControlStore | None = None,
    ) -> None:
        self.broker = open_broker(broker)
        self.registry = registry
        self.control = control if control is not None else control_for(self.broker)
        self._declared: set[str] = set()

    def enqueue(
        self,
        task: str | TaskDef | Any,
        *args: Any,
        queue: str | None = None,
        max_retries: int | None = None,
        time_limit: float | None = None,
        min_backoff: float | None = None,
        max_backoff: float | None = None,
        delay: float | None = None,
        process_at: datetime | float | None = None,
        unique_for: float | None = None,
        release_unique_on_failure: bool = False,
        release_unique_on_success: bool = False,
        task_id: str | None = None,
        **kwargs: Any,
    ) -> TaskInfo:
        """Enqueue ``task`` (a name, a :class:`TaskDef` or a registered function) with
        JSON ``args``/``kwargs``. Seconds throughout: ``delay`` or ``process_at``
        (a datetime or epoch seconds) schedule it; ``unique_for`` drops an identical
        task (same type, queue and payload) within that window with
        :class:`DuplicateTask` — the lock lasts the whole window, success or not,
        unless the task is cancelled (released at once), succeeds with
        ``release_unique_on_success`` (Asynq's rule), or dead-letters with
        ``release_unique_on_failure`` (then it may be enqueued again); ``task_id``
        replaces the generated id (:class:`TaskIdConflict` if it was used).
        """
        definition = self._definition(task)
        name = definition.name if definition else str(task)
        queue = queue or (definition.queue if definition else DEFAULT_QUEUE)
        check_retries("max_retries", max_retries)
        for setting, value in (
            ("time_limit", time_limit),
            ("unique_for", unique_for),
        ):
            check_seconds(setting, value)
        for setting, value in (
            ("min_backoff", min_backoff),
            ("max_backoff", max_backoff),
            ("delay", delay),
        ):
            check_seconds(setting, value, allow_zero=True)
        if delay is not None and process_at is not None:
            raise ConfigError("process_at", "give delay or process_at, not both")
        options: dict[str, Any] = {}
        defaults = definition or None
        for key, value, default in (
            ("max_retries", max_retries, defaults.max_retries if defaults else None),
            ("time_limit", time_limit, defaults.time_limit if defaults else None),
            ("min_backoff", min_backoff, defaults.min_backoff if defaults else None),
            ("max_backoff", max_backoff, defaults.max_backoff if defaults else None),
        ):
            chosen = value if value is not None else default
            if chosen is not None:
                options[key] = chosen if key == "max_retries" else int(chosen * 1000)
        try:
            json.dumps([args, kwargs])
        except (TypeError, ValueError) as exc:
            raise ConfigError("payload", f"task {name!r} arguments must be JSON: {exc}") from None
        message_id = task_id or str(uuid.uuid4())
        unique = (
            unique_for if unique_for is not None else (defaults.unique_for if defaults else None)
        )
        if task_id is not None and not self.control.acquire(
            f"taskid:{task_id}", message_id, CANCEL_TTL
        ):
            raise TaskIdConflict(f"task id {task_id!r} is taken; choose another id")
        if unique is not None:
            key = unique_key(name, queue, args, kwargs)
            if not self.control.acquire(key, message_id, unique):
                if task_id is not None:
                    self.control.release(f"taskid:{task_id}", message_id)
                raise DuplicateTask(
                    f"an identical {name!r} task is already enqueued on {queue!r} "
                    f"(unique for {unique} s)"
                )
            options[UNIQUE_KEY] = key
            if release_unique_on_failure:
                options[UNIQUE_RELEASE] = True
            if release_unique_on_success:
                options[UNIQUE_RELEASE_DONE] = True
        eta = _eta(delay, process_at)
        message: Message[Any] = Message(
            queue_name=queue,
            actor_name=name,
            args=args,
            kwargs=kwargs,
            options=options,
            message_id=message_id,
        )
        if queue not in self._declared:
            declare(self.broker, [queue])
            register_queues(self.broker, [queue])
            self._declared.add(queue)
        wait_ms = None if eta is None else max(0, int((eta - time.time()) * 1000))
        sent = self.broker.enqueue(message, delay=wait_ms)
        return TaskInfo(message_id, name, queue, eta, sent)

    def cancel(self, task_id: str, *, force: bool = False) -> str:
        """Cancel a queued, scheduled or running task and release its unique lock; see
        :meth:`troupe.brokers.tasks.Inspector.cancel` (``UnknownTask`` for an id no
        task has, unless ``force``)."""
        from .inspector import Inspector

        return Inspector(self.broker, self.control).cancel(task_id, force=force)

    def _definition(self, task: Any) -> TaskDef | None:
        if isinstance(task, TaskDef):
            return task
        if isinstance(task, str):
            return self.registry.find(task) if self.registry is not None else None
        if callable(task) and self.registry is not None:
            found = self.registry.find(getattr(task, "__name__", ""))
            if found is not None and found.fn is task:
                return found
        raise ConfigError("task", f"{task!r} is not a task name, a TaskDef or a registered task")


def _eta(delay: float | None, process_at: datetime | float | None) -> float | None:
    if delay is not None:
        return time.time() + delay if delay > 0 else None
    if process_at is None:
        return None
    if isinstance(process_at, datetime):
        if process_at.tzinfo is None:
            raise ConfigError("process_at", "give a timezone-aware datetime (or epoch seconds)")
        return process_at.timestamp()
    if isinstance(process_at, int | float) and not isinstance(process_at, bool):
        return float(process_at)
    raise ConfigError("process_at", f"must be a datetime or epoch seconds, got {process_at!r}")
