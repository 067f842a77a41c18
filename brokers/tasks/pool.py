"""``WorkerPool``: a supervised tree of fetchers and workers that runs a registry's tasks.

>>> from troupe.brokers.tasks import TaskRegistry, WorkerPool
>>> tasks = TaskRegistry()
>>> pool = WorkerPool("stub://doc-pool", tasks, queues={"critical": 6, "default": 3, "low": 1},
...                   concurrency=4)
>>> [c.name for c in pool.spec().child_specs][:2]
['tasks-watcher', 'tasks-fetch-critical']

The tree (a :class:`~troupe.supervisors.SupervisorSpec`, one_for_one): a
watcher (cancellations and pauses from the control store), on Redis a keeper
(heartbeats, crash recovery), per queue a fetcher and a delay fetcher,
``concurrency`` workers, and a gate that stops first on shutdown. Spawn it with
``pool.spec().spawn(system)``, nest it in your own tree, or ``await pool.start(system)``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dramatiq

from troupe import Actor, ActorRef, ActorSystem, Backoff, Child
from troupe.errors import ConfigError, require_at_least
from troupe.supervisors import ChildSpec, SupervisorSpec

from .activity import report_pool, worker_id
from .catalog import register_queues
from .control import ControlStore, control_for
from .definitions import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIME_LIMIT,
    TaskRegistry,
    check_retries,
    check_seconds,
)
from .fetcher import DelayFetcher, QueueFetcher
from .intake import Intake
from .keeper import Keeper
from .metrics import TaskStats
from .middleware import TaskMiddleware
from .redis_queues import RedisQueues
from .runner import DEFAULT_BACKOFF, Runner
from .schedule import ScheduleFetcher
from .transport import Outage, broker_kind, connection_errors, delay_queue, open_broker
from .worker import Gate, TaskWorker

logger = logging.getLogger(__name__)

_POLL = "poll"
CONNECTION_ERRORS = connection_errors()


class Watcher(Actor):
    """Polls the control store: cancels running tasks by id, pauses and resumes queues."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.outage = Outage("task pool watcher (cancellations, pauses)")

    async def on_start(self) -> None:
        self.pool.runner.loop = asyncio.get_running_loop()
        self.pool.intake.open()
        await self._poll()
        self.timers.every(self.pool.poll_interval, _POLL, key=_POLL)

    async def receive(self, message: Any) -> None:
        await self._poll()

    async def _poll(self) -> None:
        control = self.pool.control
        try:
            cancelled, paused = await asyncio.to_thread(self._exchange, control)
        except CONNECTION_ERRORS as exc:  # keep the last known state until it is back
            self.outage.failed(exc)
            return
        self.outage.recovered()
        runner = self.pool.runner
        runner.cancelled = cancelled
        if cancelled:
            runner.cancel_running(cancelled)
        self.pool.intake.set_paused(paused & set(self.pool.queues))

    def _exchange(self, control: ControlStore) -> tuple[frozenset[str], frozenset[str]]:
        try:
            register_queues(self.pool.broker, self.pool.queues)  # once (then a no-op)
        except Exception as exc:  # inspectors miss the names until it works
            logger.debug("cannot record the pool's queues yet: %s", exc)
        report_pool(self.pool)
        return frozenset(control.cancelled()), frozenset(control.paused())


class WorkerPool:
    """Runs ``registry``'s tasks from a dramatiq broker (a URL or a broker).

    ``queues`` maps queue names to weights (default: the registry's queues,
    weight 1); ``strict`` takes from the heaviest non-empty queue first.
    ``concurrency`` workers run tasks; ``prefetch`` messages per queue may be
    fetched and not yet acked (default ``8 * concurrency``, at least 32: dramatiq's
    Redis consumer sleeps whenever it is at its prefetch, so a small one starves
    workers). ``max_retries``, ``time_limit`` (seconds) and ``backoff`` apply to
    tasks and messages that do not set their own. ``poll_interval``: how often
    cancellations and pauses are read from the control store (the delay before
    they take effect). ``settle_timeout``: how long a worker retries an ack (or a
    retry, or a dead-letter) through a broker outage before leaving the message to
    the broker's redelivery. ``heartbeat_timeout`` (Redis): a pool silent that long is
    dead, and the tasks it held go back on their queues within ``1.2 *`` that (see
    :mod:`~troupe.brokers.tasks.keeper`); RabbitMQ returns them when the connection drops.
    """

    def __init__(
        self,
        broker: str | dramatiq.Broker,
        registry: TaskRegistry,
        *,
        queues: Mapping[str, int] | Sequence[str] | None = None,
        concurrency: int = 8,
        strict: bool = False,
        prefetch: int | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        time_limit: float = DEFAULT_TIME_LIMIT,
        backoff: Backoff = DEFAULT_BACKOFF,
        control: ControlStore | None = None,
        poll_interval: float = 0.2,
        drain_timeout: float = 10.0,
        name: str = "tasks",
        middleware: Sequence[TaskMiddleware] | None = None,
        settle_timeout: float = 30.0,
        system: ActorSystem | None = None,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        if not isinstance(registry, TaskRegistry):
            raise ConfigError("registry", f"must be a TaskRegistry, got {registry!r}")
        require_at_least("concurrency", concurrency, 1)
        check_retries("max_retries", max_retries)
        check_seconds("time_limit", time_limit)
        check_seconds("poll_interval", poll_interval)
        check_seconds("drain_timeout", drain_timeout, allow_zero=True)
        check_seconds("settle_timeout", settle_timeout, allow_zero=True)
        check_seconds("heartbeat_timeout", heartbeat_timeout)
        if not isinstance(backoff, Backoff):
            raise ConfigError("backoff", f"must be a troupe.Backoff, got {backoff!r}")
        if queues is None:
            queues = registry.queues() or ["default"]
        if not isinstance(queues, Mapping):
            queues = dict.fromkeys(queues, 1)
        self.broker = open_broker(broker)
        self.heartbeat_timeout = heartbeat_timeout
        self.redis = RedisQueues(self.broker) if broker_kind(self.broker) == "redis" else None
        self.registry = registry
        self.intake = Intake(queues, strict=strict)
        self.queues = self.intake.queues
        self.concurrency = concurrency
        self.prefetch = prefetch if prefetch is not None else max(8 * concurrency, 32)
        require_at_least("prefetch", self.prefetch, 1)
        self.control = control if control is not None else control_for(self.broker)
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout
        self.name = name
        self.worker_id = worker_id(name)
        self.stats = TaskStats(system)
        self.runner = Runner(
            self.broker,
            registry,
            self.control,
            self.stats,
            max_retries=max_retries,
            time_limit=time_limit,
            backoff=backoff,
            middleware=middleware,
            settle_timeout=settle_timeout,
        )
        self.ref: ActorRef | None = None

    def spec(self) -> SupervisorSpec:
        """The pool's supervision tree."""
        name = self.name
        poll_ms = max(10, int(self.poll_interval * 1000 / 2))
        redis = self.redis
        # unbounded: a delay fetcher holding a bounded share would keep near-due tasks
        # behind far-future ones (RabbitMQ: prefetch 0; Redis keeps a schedule instead)
        delay_prefetch = 0 if broker_kind(self.broker) == "rabbitmq" else 2**31 - 1
        children: list[ChildSpec] = [ChildSpec(Watcher, (self,), name=f"{name}-watcher")]
        if redis is not None:
            names = [n for q in self.queues for n in (q, delay_queue(q))]
            children.append(
                ChildSpec(Keeper, (redis, names, self.heartbeat_timeout), name=f"{name}-keeper")
            )
        for queue in self.queues:
            children.append(
                ChildSpec(
                    QueueFetcher,
                    (self.broker, self.intake, queue, self.prefetch, poll_ms, self.concurrency),
                    {"redis": redis},
                    name=f"{name}-fetch-{queue}",
                )
            )
            delay = (
                ChildSpec(
                    ScheduleFetcher,
                    (self.broker, self.intake, queue, redis, poll_ms),
                    name=f"{name}-delay-{queue}",
                )
                if redis is not None
                else ChildSpec(
                    DelayFetcher,
                    (self.broker, self.intake, queue, delay_prefetch, poll_ms),
                    name=f"{name}-delay-{queue}",
                )
            )
            children.append(delay)
        for i in range(1, self.concurrency + 1):
            children.append(
                ChildSpec(
                    TaskWorker,
                    (self.intake, self.runner),
                    name=f"{name}-worker-{i}",
                    shutdown=self.drain_timeout,
                )
            )
        children.append(ChildSpec(Gate, (self.intake,), name=f"{name}-gate"))
        return SupervisorSpec(
            children,
            name=name,
            max_restarts=10,
            within=10.0,
            backoff=Backoff(initial=0.1, maximum=5.0),
        )

    async def start(self, system: ActorSystem) -> ActorRef:
        """Spawn the tree in ``system`` and wait until every child has started."""
        if not self.stats.exported and system.metrics is not None:
            self.stats = self.runner.stats = TaskStats(system)
        ref = self.spec().spawn(system)
        await Child.of(ref).wait_started()
        self.ref = ref
        return ref

    async def stop(self) -> None:
        """Stop the tree: intake closes, running tasks finish, unstarted ones go back."""
        ref, self.ref = self.ref, None
        if ref is not None:
            await Child.of(ref).stop_within(None)
