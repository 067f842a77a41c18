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
claim's name is the task id of what it enqueues.

Failover catch-up: a standing-by scheduler notes the ticks that fall due while
it does not lead; when it takes the lead (the leader died, its lease expired),
it fires those of the last ``catch_up`` seconds (default twice the lease) that
nobody fired, once each, late, oldest first — the per-tick claims, which
outlive ``catch_up``, skip those the old leader did fire. Ticks older than
``catch_up``, or from before any scheduler ran, are not made up. A six-field
expression has seconds last (croniter's convention).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
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
    ``owner``: this scheduler's name in the lease (default: a random id);
    ``catch_up``: how far back (seconds) a new leader fires the ticks nobody fired
    (default ``2 * lease``, which covers a failover; at least the lease).
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
        catch_up: float | None = None,
    ) -> None:
        check_seconds("cron.tick", tick)
        check_seconds("cron.lease", lease)
        check_seconds("cron.catch_up", catch_up)
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
        self.catch_up = catch_up if catch_up is not None else 2 * lease
        if self.catch_up < lease:
            raise ConfigError(
                "cron.catch_up", f"must be at least the lease ({lease} s), got {catch_up}"
            )
        self.owner = owner or str(uuid.uuid4())
        self.leading = False
        self.fired: list[tuple[str, float]] = []  # (entry, fire time) this scheduler enqueued
        self._next: dict[str, float] = {}
        self._missed: dict[str, deque[float]] = {}  # ticks due while standing by

    @property
    def _leader_key(self) -> str:
        return f"cron:{self.group}:leader"

    def on_start(self) -> None:
        now = time.time()
        self._next = {str(e.name): e.next_after(now) for e in self.entries}
        self._missed = {str(e.name): deque() for e in self.entries}
        self.timers.every(self.tick, _TICK, key=_TICK)

    async def receive(self, message: Any) -> None:
        await asyncio.to_thread(self.check)

    def check(self) -> None:
        """Renew or take the lease; enqueue what is due if this scheduler leads (blocking)."""
        now = time.time()
        control = self.client.control
        leading = control.renew(self._leader_key, self.owner, self.lease)
        took_lead = leading and not self.leading
        if leading != self.leading:
            logger.info(
                "cron scheduler %s %s the lead", self.group, "takes" if leading else "loses"
            )
            self.leading = leading
        for entry in self.entries:
            key = str(entry.name)
            missed = self._missed[key]
            due = self._next[key]
            while due <= now:
                missed.append(due)
                due = entry.next_after(due)
            self._next[key] = due
            while missed and missed[0] < now - self.catch_up:
                missed.popleft()  # past the catch-up window: not made up
            if leading:
                late = self._fire_due(entry, missed, now - self.tick)
                if took_lead and late:
                    logger.warning(
                        "cron %s: %s took over the lead and fired %d missed tick(s) of %s",
                        self.group,
                        self.owner,
                        late,
                        entry.name,
                    )

    def _fire_due(self, entry: CronEntry, missed: deque[float], late_before: float) -> int:
        """Fire the noted ticks, oldest first, each unless another scheduler did (its
        claim tells); how many of those fired here were due before ``late_before``."""
        late = 0
        while missed:
            due = missed[0]
            if self._fire(entry, due) and due < late_before:
                late += 1
            missed.popleft()
        return late

    def _fire(self, entry: CronEntry, due: float) -> bool:
        """Enqueue the tick ``due`` unless another scheduler did; True if this one did."""
        control = self.client.control
        period = max(1.0, entry.next_after(due) - due)
        claim = f"cron:{self.group}:{entry.name}:{int(due)}"
        # the claim outlives the catch-up window: a new leader never fires a tick twice
        ttl = max(2 * period, 2 * self.lease, self.catch_up + 2 * self.lease)
        if not control.acquire(claim, self.owner, ttl):
            return False  # another scheduler enqueued this tick
        options = {"task_id": claim, **dict(entry.options)}
        try:
            self.client.enqueue(entry.task, *entry.args, **options, **dict(entry.kwargs))
        except Exception:
            control.release(claim, self.owner)
            raise
        self.fired.append((str(entry.name), due))
        logger.debug("cron %s fired %s for %s", self.group, entry.name, due)
        return True

    async def on_stop(self) -> None:
        if self.leading:
            self.leading = False
            await asyncio.to_thread(self.client.control.release, self._leader_key, self.owner)
