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
- :class:`Inspector` / :func:`queue_stats`: per queue size, in flight, scheduled, retrying,
  dead; pending, active, scheduled and dead tasks; requeue or delete; pause; cancel.
- :class:`Results`: keep task results where dramatiq's Results API reads them.
- :func:`worker_tree`: worker processes under a process supervisor (``troupe tasks worker``).
"""

from . import observe as _observe  # noqa: F401  (registers the tasks section)
from .catalog import broker_errors, known_queues, register_queues
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
from .inspector import (
    ActiveTask,
    InspectError,
    Inspector,
    QueueStats,
    TaskRecord,
    UnknownQueue,
    UnknownTask,
    queue_stats,
)
from .metrics import OUTCOMES, TaskStats
from .middleware import (
    Cancellation,
    Retries,
    TaskMiddleware,
    TimeLimits,
    Uniqueness,
    default_middleware,
)
from .picker import Picker
from .pool import WorkerPool
from .results import MISSING, ResultFailure, Results, read_result, result_backend
from .serve import WorkerSettings, worker_tree
from .transport import open_broker

__all__ = [
    "MISSING",
    "OUTCOMES",
    "ActiveTask",
    "Cancellation",
    "ControlStore",
    "CronEntry",
    "CronScheduler",
    "DuplicateTask",
    "InspectError",
    "Inspector",
    "MemoryControl",
    "Picker",
    "QueueStats",
    "RedisControl",
    "ResultFailure",
    "Results",
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
    "UnknownQueue",
    "UnknownTask",
    "WorkerPool",
    "WorkerSettings",
    "broker_errors",
    "control_for",
    "current_task",
    "default_middleware",
    "known_queues",
    "open_broker",
    "queue_stats",
    "read_result",
    "register_queues",
    "result_backend",
    "worker_tree",
]
