"""The pool's hand-off between fetchers and workers: per-queue buffers and idle workers.

Fetcher threads :meth:`Intake.put` messages they took from the broker; a
worker asks :meth:`Intake.take` for the next one, which the
:class:`~troupe.brokers.tasks.picker.Picker` chooses among the queues that
have one ready and are not paused, waiting on a condition variable up to a
timeout when there is none (a wake-up costs what it costs a dramatiq worker
thread). Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

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
        self._ready_cond = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._buffers: dict[str, deque[Job]] = {q: deque() for q in self.picker.weights}
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
        """Add a fetched message; wakes one waiting worker."""
        with self._lock:
            self._buffers[job.queue].append(job)
            self._ready_cond.notify()

    def take(self, timeout: float) -> Job | None:
        """The next message by the picker's choice, waiting up to ``timeout`` seconds for
        one; None when none came or the intake is closed."""
        deadline: float | None = None
        with self._lock:
            while not self.closed:
                queue = self.picker.pick(self._ready)
                if queue is not None:
                    self._room.notify_all()
                    return self._buffers[queue].popleft()
                if deadline is None:
                    deadline = time.monotonic() + timeout
                    remaining = timeout
                else:
                    remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready_cond.wait(remaining):
                    return None
            return None

    def wait_for_room(self, queue: str, limit: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until fewer than ``limit`` messages of ``queue``
        are buffered (a fetcher tops up its buffer only then); False on timeout."""
        with self._lock:
            if len(self._buffers[queue]) < limit:
                return True
            return self._room.wait_for(lambda: len(self._buffers[queue]) < limit, timeout)

    def set_paused(self, queues: frozenset[str]) -> None:
        """Skip ``queues`` from now on; wakes waiting workers when a queue resumes."""
        with self._lock:
            resumed = self._paused - queues
            self._paused = queues
            if any(self._buffers.get(q) for q in resumed):
                self._ready_cond.notify_all()

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
        """Workers take nothing more (waiting ones return at once)."""
        with self._lock:
            self.closed = True
            self._ready_cond.notify_all()
            self._room.notify_all()

    def open(self) -> None:
        """Workers take messages (again)."""
        with self._lock:
            self.closed = False
