"""troupe.brokers.tasks: Asynq's task features on dramatiq messages, run by supervised actors.

>>> from troupe.brokers.tasks import TaskClient, TaskRegistry, WorkerPool
>>> tasks = TaskRegistry()
>>> @tasks.task(queue="critical")
... def send_email(to: str) -> None: ...

- :class:`TaskRegistry` / :class:`Task`: task types (a name = the dramatiq actor name).
- :class:`TaskClient`: enqueue with retries, time limit, delay/process-at, queue,
  unique-for and task id; cancel by id.
- :class:`WorkerPool`: fetchers and ``concurrency`` workers under a supervisor, weighted
  or strict queue priority, retries with backoff then the dead-letter queue, time limits.
- :class:`CronScheduler`: periodic tasks, one scheduler active per deployment (a lease).
- :class:`Inspector`: queue sizes, scheduled, retrying, dead; requeue or delete; pause.
"""

from .client import DuplicateTask, TaskClient, TaskIdConflict, TaskInfo
from .context import (
    SkipTask,
    TaskCancelled,
    TaskContext,
    TimeLimitExceeded,
    current_task,
)
from .control import ControlStore, MemoryControl, RedisControl, control_for
from .cron import CronEntry, CronScheduler
from .definitions import Task, TaskDef, TaskRegistry
from .inspector import Inspector, QueueStats, TaskRecord
from .metrics import OUTCOMES, TaskStats
from .middleware import Cancellation, Retries, TaskMiddleware, TimeLimits, Uniqueness
from .picker import Picker
from .pool import WorkerPool
from .transport import open_broker

__all__ = [
    "OUTCOMES",
    "Cancellation",
    "ControlStore",
    "CronEntry",
    "CronScheduler",
    "DuplicateTask",
    "Inspector",
    "MemoryControl",
    "Picker",
    "QueueStats",
    "RedisControl",
    "Retries",
    "SkipTask",
    "Task",
    "TaskCancelled",
    "TaskClient",
    "TaskContext",
    "TaskDef",
    "TaskIdConflict",
    "TaskInfo",
    "TaskMiddleware",
    "TaskRecord",
    "TaskRegistry",
    "TaskStats",
    "TimeLimitExceeded",
    "TimeLimits",
    "Uniqueness",
    "WorkerPool",
    "control_for",
    "current_task",
    "open_broker",
]
