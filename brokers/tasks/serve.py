"""Worker processes for a module's tasks: what ``troupe tasks worker MODULE`` runs.

>>> settings = WorkerSettings("myapp.tasks", "redis://127.0.0.1:6379/0",
...                          queues={"critical": 6, "default": 3}, concurrency=4)
>>> WorkerSettings.from_json(settings.to_json()) == settings
True
>>> tree = worker_tree(settings, processes=2)
>>> [c.name for c in tree.status()]
['tasks-0', 'tasks-1']

:func:`worker_tree` is a :class:`~troupe.supervisors.ProcessSupervisor` of
``processes`` fresh interpreters, each running :func:`build`: it imports the
module, finds its :class:`~troupe.brokers.tasks.TaskRegistry` and starts one
:class:`~troupe.brokers.tasks.WorkerPool` with the settings, which travel to
the children in the ``TROUPE_TASKS_WORKER`` environment variable. SIGTERM
drains every process (intake closes, running tasks finish, unstarted ones go
back to the broker); a process that dies is restarted with backoff.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

from troupe import ActorSystem
from troupe.errors import ConfigError, require_at_least
from troupe.supervisors import ProcessSpec, ProcessSupervisor

from .definitions import TaskRegistry, check_seconds

logger = logging.getLogger(__name__)

ENV_SETTINGS = "TROUPE_TASKS_WORKER"


@dataclass(frozen=True)
class WorkerSettings:
    """What one worker process runs: the tasks of ``module`` (``pkg.mod`` or
    ``pkg.mod:attribute`` naming a TaskRegistry) from ``broker``, with the
    :class:`~troupe.brokers.tasks.WorkerPool` options of the same names (``queues``
    None: the registry's queues; ``control``: a Redis URL for the control store;
    ``result_ttl``: keep results that long, seconds; None keeps none)."""

    module: str
    broker: str
    queues: dict[str, int] | None = None
    concurrency: int = 8
    strict: bool = False
    prefetch: int | None = None
    control: str | None = None
    result_ttl: float | None = None
    drain_timeout: float = 10.0
    name: str = "tasks"

    def __post_init__(self) -> None:
        if not isinstance(self.module, str) or not self.module.strip(":"):
            raise ConfigError("module", f"must name a module, got {self.module!r}")
        require_at_least("concurrency", self.concurrency, 1)
        if self.prefetch is not None:
            require_at_least("prefetch", self.prefetch, 1)
        check_seconds("result_ttl", self.result_ttl)
        check_seconds("drain_timeout", self.drain_timeout, allow_zero=True)
        for queue, weight in (self.queues or {}).items():
            if not queue or isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise ConfigError("queues", f"{queue}={weight!r}: a queue weight is 1 or more")

    def to_json(self) -> str:
        """These settings as JSON (the children read them from the environment)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        """The settings :meth:`to_json` wrote."""
        return cls(**json.loads(text))


def parse_queues(specs: list[str]) -> dict[str, int] | None:
    """``["critical=6", "default=3", "low"]`` -> ``{"critical": 6, "default": 3, "low": 1}``
    (comma-separated lists too); None for no specs.

    >>> parse_queues(["critical=6,default=3", "low"])
    {'critical': 6, 'default': 3, 'low': 1}
    """
    queues: dict[str, int] = {}
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, weight = part.partition("=")
            try:
                value = int(weight) if sep else 1
            except ValueError:
                raise ConfigError(
                    "queues", f"{part!r}: the weight must be a whole number"
                ) from None
            if not name or value < 1:
                raise ConfigError("queues", f"{part!r}: write QUEUE or QUEUE=WEIGHT (1 or more)")
            queues[name] = value
    return queues or None


def load_registry(module: str) -> TaskRegistry:
    """The TaskRegistry named by ``pkg.mod:attribute``, or the one ``pkg.mod`` defines;
    ConfigError when there is none, several, or the import fails."""
    name, _, attribute = module.partition(":")
    try:
        mod = importlib.import_module(name)
    except Exception as exc:
        raise ConfigError(
            "module", f"cannot import {name!r}: {type(exc).__name__}: {exc}"
        ) from None
    if attribute:
        obj: Any = mod
        for part in attribute.split("."):
            obj = getattr(obj, part, None)
        if not isinstance(obj, TaskRegistry):
            raise ConfigError("module", f"{module!r} is not a TaskRegistry (got {obj!r})")
        return obj
    found = {k: v for k, v in vars(mod).items() if isinstance(v, TaskRegistry)}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise ConfigError("module", f"module {name!r} defines no TaskRegistry")
    raise ConfigError(
        "module",
        f"module {name!r} has several registries ({', '.join(sorted(found))}); "
        f"name one as {name}:ATTRIBUTE",
    )


def make_pool(settings: WorkerSettings, system: ActorSystem | None = None) -> Any:
    """The :class:`~troupe.brokers.tasks.WorkerPool` that ``settings`` describe."""
    from .control import RedisControl
    from .middleware import default_middleware
    from .pool import WorkerPool
    from .results import Results, result_backend
    from .transport import open_broker

    registry = load_registry(settings.module)
    broker = open_broker(settings.broker)
    control = RedisControl(settings.control) if settings.control else None
    middleware = default_middleware()
    if settings.result_ttl is not None:
        backend = result_backend(broker, settings.control)
        middleware.append(Results(backend, ttl=settings.result_ttl))
    return WorkerPool(
        broker,
        registry,
        queues=settings.queues,
        concurrency=settings.concurrency,
        strict=settings.strict,
        prefetch=settings.prefetch,
        control=control,
        drain_timeout=settings.drain_timeout,
        name=settings.name,
        middleware=middleware,
        system=system,
    )


async def build(system: ActorSystem) -> None:
    """One worker process: a WorkerPool with the settings in ``$TROUPE_TASKS_WORKER``."""
    text = os.environ.get(ENV_SETTINGS)
    if not text:
        raise ConfigError(ENV_SETTINGS, "not set; start worker processes with worker_tree()")
    settings = WorkerSettings.from_json(text)
    pool = make_pool(settings, system)
    await pool.start(system)
    logger.info(
        "task worker %s: %d threads on %s from %s",
        settings.name,
        settings.concurrency,
        ", ".join(f"{q}={w}" for q, w in pool.intake.picker.weights.items()),
        pool.broker.__class__.__name__,
    )


def worker_tree(
    settings: WorkerSettings,
    *,
    processes: int = 1,
    max_restarts: int = 5,
    within: float = 60.0,
    log_level: str | None = None,
) -> ProcessSupervisor:
    """``processes`` worker processes of ``settings`` under one ProcessSupervisor."""
    require_at_least("processes", processes, 1)
    spec = ProcessSpec(
        f"{__name__}:build",
        count=processes,
        shutdown=settings.drain_timeout,
        name=settings.name,
        env={ENV_SETTINGS: settings.to_json()},
    )
    return ProcessSupervisor(
        [spec],
        max_restarts=max_restarts,
        within=within,
        name=f"{settings.name} ({settings.module})",
        log_level=log_level,
    )
