"""The pool's hand-off between fetchers and workers: per-queue buffers and idle workers.

Fetcher threads :meth:`Intake.put` messages they took from the broker; a
worker asks :meth:`Intake.take_or_park` for the next one, which the
:class:`~troupe.brokers.tasks.picker.Picker` chooses among the queues that
have one ready and are not paused. A worker that finds nothing parks a wake
callback, called once by the next ``put`` (or resume). Thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dramatiq.broker import Consumer, MessageProxy

from .picker import Picker

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """A message taken from ``queue`` and the consumer that acks it."""

    proxy: MessageProxy
    consumer: Consumer
    queue: str


class Intake:
    """Buffers of fetched messages per queue, the picker, parked workers, paused queues."""

    def __init__(self, queues: Mapping[str, int], *, strict: bool = False) -> None:
        self.picker = Picker(queues, strict=strict)
        self._lock = threading.Lock()
        self._buffers: dict[str, deque[Job]] = {q: deque() for q in self.picker.weights}
        self._idle: list[Callable[[], Any]] = []
        self._paused: frozenset[str] = frozenset()
        self.closed = False

    @property
    def queues(self) -> list[str]:
        """The queue names, heaviest first."""
        return sorted(self.picker.weights, key=lambda q: -self.picker.weights[q])

    @property
    def paused(self) -> frozenset[str]:
        """The queues workers skip."""
        return self._paused

    def _ready(self, queue: str) -> bool:
        return bool(self._buffers[queue]) and queue not in self._paused

    def put(self, job: Job) -> None:
        """Add a fetched message; wakes one parked worker."""
        with self._lock:
            self._buffers[job.queue].append(job)
            wake = self._idle.pop() if self._idle and job.queue not in self._paused else None
        if wake is not None:
            wake()

    def take_or_park(self, wake: Callable[[], Any]) -> Job | None:
        """The next message by the picker's choice; None after parking ``wake``."""
        with self._lock:
            if not self.closed:
                queue = self.picker.pick(self._ready)
                if queue is not None:
                    return self._buffers[queue].popleft()
            self._idle.append(wake)
            return None

    def set_paused(self, queues: frozenset[str]) -> None:
        """Skip ``queues`` from now on; wakes parked workers when a queue resumes."""
        with self._lock:
            resumed = self._paused - queues
            self._paused = queues
            wakes: list[Callable[[], Any]] = []
            if any(self._buffers.get(q) for q in resumed):
                wakes, self._idle = self._idle, []
        for wake in wakes:
            wake()

    def drain(self, queue: str) -> list[Job]:
        """Remove and return the messages buffered for ``queue`` (on shutdown)."""
        with self._lock:
            jobs = list(self._buffers[queue])
            self._buffers[queue].clear()
            return jobs

    def buffered(self, queue: str) -> int:
        """Messages fetched from ``queue`` and not yet taken by a worker."""
        return len(self._buffers[queue])

    def close(self) -> None:
        """Workers take nothing more; parked wakes are dropped."""
        with self._lock:
            self.closed = True
            self._idle.clear()
