"""Task definitions: a type name, a handler and default options, kept in a registry.

>>> tasks = TaskRegistry()
>>> @tasks.task(queue="critical", max_retries=3)
... def send_email(to: str) -> None:
...     pass
>>> tasks.get("send_email").queue
'critical'

A task's name is the dramatiq ``actor_name`` of its messages, so a stock
dramatiq actor of the same name on the same queue is the same task. A class
with a ``run`` method (sync or ``async def``) is a task too (see :class:`Task`).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "default"
#: dramatiq's defaults: 20 retries, 10 minutes per attempt.
DEFAULT_MAX_RETRIES = 20
DEFAULT_TIME_LIMIT = 600.0

F = TypeVar("F", bound=Callable[..., Any])


def check_seconds(setting: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is None or a finite number of seconds."""
    if value is None:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(setting, f"must be {bound} seconds, got {value!r}")


def check_retries(setting: str, value: int | None) -> None:
    """Raise ConfigError unless ``value`` is None or a whole number >= 0."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(setting, f"must be a whole number, zero or more; got {value!r}")


@dataclass(frozen=True)
class TaskDef:
    """One task type: ``name`` (the message's actor_name), ``fn``, its queue and defaults.

    ``time_limit`` and the backoffs are seconds (messages carry dramatiq's
    milliseconds); ``unique_for`` makes every enqueue of it unique for that long.
    """

    name: str
    fn: Callable[..., Any]
    queue: str = DEFAULT_QUEUE
    max_retries: int | None = None
    time_limit: float | None = None
    min_backoff: float | None = None
    max_backoff: float | None = None
    unique_for: float | None = None
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("task.name", f"must be a non-empty string, got {self.name!r}")
        if not callable(self.fn):
            raise ConfigError(f"task {self.name!r}.fn", f"{self.fn!r} is not callable")
        if not isinstance(self.queue, str) or not self.queue or self.queue.endswith((".DQ", ".XQ")):
            raise ConfigError(
                f"task {self.name!r}.queue",
                f"must be a queue name (no .DQ/.XQ), got {self.queue!r}",
            )
        check_retries(f"task {self.name!r}.max_retries", self.max_retries)
        check_seconds(f"task {self.name!r}.time_limit", self.time_limit)
        check_seconds(f"task {self.name!r}.min_backoff", self.min_backoff, allow_zero=True)
        check_seconds(f"task {self.name!r}.max_backoff", self.max_backoff, allow_zero=True)
        check_seconds(f"task {self.name!r}.unique_for", self.unique_for)
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the handler here and now (no queue): what tests of task code call."""
        return self.fn(*args, **kwargs)


class Task:
    """Base of class-based tasks: set ``name`` (default: the class name), ``queue`` and
    defaults as class attributes and define ``run`` (``def`` or ``async def``).

    >>> class Invoice(Task):
    ...     queue = "low"
    ...     def run(self, order_id: str) -> str:
    ...         return f"invoice-{order_id}"
    >>> TaskRegistry().register(Invoice).name
    'Invoice'
    """

    name: ClassVar[str | None] = None
    queue: ClassVar[str] = DEFAULT_QUEUE
    max_retries: ClassVar[int | None] = None
    time_limit: ClassVar[float | None] = None
    min_backoff: ClassVar[float | None] = None
    max_backoff: ClassVar[float | None] = None
    unique_for: ClassVar[float | None] = None

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task's work. Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define run(...)")


class TaskRegistry:
    """Task types by name: what a worker pool can run and a client can enqueue."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDef] = {}

    @overload
    def task(self, fn: F) -> F: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        time_limit: float | None = None,
        min_backoff: float | None = None,
        max_backoff: float | None = None,
        unique_for: float | None = None,
    ) -> Callable[[F], F]: ...

    def task(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        time_limit: float | None = None,
        min_backoff: float | None = None,
        max_backoff: float | None = None,
        unique_for: float | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator: register ``fn`` as a task (its name is the function's, unless given).
        The function stays callable as before."""

        def register(f: F) -> F:
            self.add(
                TaskDef(
                    name or f.__name__,
                    f,
                    queue,
                    max_retries,
                    time_limit,
                    min_backoff,
                    max_backoff,
                    unique_for,
                )
            )
            return f

        return register(fn) if fn is not None else register

    def register(self, cls: type[Task]) -> TaskDef:
        """Register a :class:`Task` subclass; one instance runs every message."""
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ConfigError("task", f"{cls!r} is not a Task subclass")
        instance = cls()
        return self.add(
            TaskDef(
                cls.name or cls.__name__,
                instance.run,
                cls.queue,
                cls.max_retries,
                cls.time_limit,
                cls.min_backoff,
                cls.max_backoff,
                cls.unique_for,
            )
        )

    def add(self, definition: TaskDef) -> TaskDef:
        """Register ``definition``; a second task under the same name is a ConfigError."""
        old = self._tasks.get(definition.name)
        if old is not None and old.fn is not definition.fn:
            raise ConfigError("task.name", f"a task named {definition.name!r} is registered")
        self._tasks[definition.name] = definition
        return definition

    def get(self, name: str) -> TaskDef:
        """The task called ``name``; KeyError names the registered ones."""
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise KeyError(f"no task named {name!r} (registered: {known})") from None

    def find(self, name: str) -> TaskDef | None:
        """The task called ``name``, or None."""
        return self._tasks.get(name)

    def queues(self) -> list[str]:
        """The queues of the registered tasks, sorted."""
        return sorted({t.queue for t in self._tasks.values()})

    def __iter__(self) -> Iterator[TaskDef]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks
