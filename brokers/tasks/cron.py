"""Periodic tasks: cron expressions (parsed by croniter), one scheduler active at a time.

>>> entry = CronEntry("*/5 * * * *", "cleanup")     # every five minutes
>>> entry.name
'cleanup@*/5 * * * *'

Every process of a deployment may run a :class:`CronScheduler` of the
same ``group``; they share the :class:`~troupe.brokers.tasks.control.ControlStore`
(Redis for several processes or nodes). Only the holder of the lease
``cron:GROUP:leader`` enqueues, renewing it every tick; when it dies, another
takes over once the lease expires. Each fire time is also claimed once
(``cron:GROUP:ENTRY:TIME``) before it is enqueued, so even two schedulers that
both believe they lead (a pause past the lease) enqueue a tick once; the
claim's name is the task id of what it enqueues. Ticks
missed while no scheduler led are skipped, not made up. A six-field
expression has seconds last (croniter's convention).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from troupe import Actor
from troupe.errors import ConfigError

from .client import TaskClient
from .definitions import check_seconds

logger = logging.getLogger(__name__)

_TICK = "tick"


@dataclass(frozen=True)
class CronEntry:
    """Enqueue ``task`` with ``args``/``kwargs`` and enqueue ``options`` on every ``spec`` time."""

    spec: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str) or not croniter.is_valid(self.spec):
            raise ConfigError(f"cron {self.task!r}.spec", f"not a cron expression: {self.spec!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigError("cron.task", f"must be a task name, got {self.task!r}")
        if self.name is None:
            object.__setattr__(self, "name", f"{self.task}@{self.spec}")
        object.__setattr__(self, "args", tuple(self.args))

    def next_after(self, moment: float) -> float:
        """The first fire time strictly after ``moment`` (epoch seconds)."""
        return float(croniter(self.spec, moment).get_next(float))


class CronScheduler(Actor):
    """Enqueues the entries' tasks on time while it holds the lease (module docstring).

    Schedulers with the same ``group`` share one lease (spawn one per process or node).
    ``tick``: seconds between checks (fires are at most this late);
    ``lease``: seconds a silent leader keeps the lease (default ``10 * tick``, at least 2 s);
    ``owner``: this scheduler's name in the lease (default: a random id).
    """

    def __init__(
        self,
        client: TaskClient,
        entries: Sequence[CronEntry],
        *,
        group: str = "cron",
        tick: float = 1.0,
        lease: float | None = None,
        owner: str | None = None,
    ) -> None:
        check_seconds("cron.tick", tick)
        check_seconds("cron.lease", lease)
        lease = lease if lease is not None else max(2.0, 10 * tick)
        if lease <= tick:
            raise ConfigError("cron.lease", f"must be longer than the tick ({tick} s), got {lease}")
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ConfigError("cron.entries", f"entry names must be unique, got {names}")
        self.client = client
        self.entries = list(entries)
        self.group = group
        self.tick = tick
        self.lease = lease
        self.owner = owner or str(uuid.uuid4())
        self.leading = False
        self.fired: list[tuple[str, float]] = []  # (entry, fire time) this scheduler enqueued
        self._next: dict[str, float] = {}

    @property
    def _leader_key(self) -> str:
        return f"cron:{self.group}:leader"

    def on_start(self) -> None:
        now = time.time()
        self._next = {str(e.name): e.next_after(now) for e in self.entries}
        self.timers.every(self.tick, _TICK, key=_TICK)

    async def receive(self, message: Any) -> None:
        await asyncio.to_thread(self.check)

    def check(self) -> None:
        """Renew or take the lease; enqueue what is due if this scheduler leads (blocking)."""
        now = time.time()
        control = self.client.control
        leading = control.renew(self._leader_key, self.owner, self.lease)
        if leading != self.leading:
            logger.info(
                "cron scheduler %s %s the lead", self.group, "takes" if leading else "loses"
            )
            self.leading = leading
        for entry in self.entries:
            key = str(entry.name)
            due = self._next[key]
            while due <= now:
                if leading:
                    self._fire(entry, due)
                due = entry.next_after(due)
            self._next[key] = due

    def _fire(self, entry: CronEntry, due: float) -> None:
        control = self.client.control
        period = max(1.0, entry.next_after(due) - due)
        claim = f"cron:{self.group}:{entry.name}:{int(due)}"
        if not control.acquire(claim, self.owner, max(2 * period, 2 * self.lease)):
            return  # another scheduler enqueued this tick
        options = {"task_id": claim, **dict(entry.options)}
        try:
            self.client.enqueue(entry.task, *entry.args, **options, **dict(entry.kwargs))
        except Exception:
            control.release(claim, self.owner)
            raise
        self.fired.append((str(entry.name), due))
        logger.debug("cron %s fired %s for %s", self.group, entry.name, due)

    async def on_stop(self) -> None:
        if self.leading:
            self.leading = False
            await asyncio.to_thread(self.client.control.release, self._leader_key, self.owner)
