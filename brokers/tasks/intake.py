"""The pool's hand-off between fetchers and workers: per-queue buffers and idle workers.

Fetcher threads :meth:`Intake.put` messages they took from the broker; a
worker asks :meth:`Intake.take` for the next one, which the
:class:`~troupe.brokers.tasks.picker.Picker` chooses among the queues that
have one ready and are not paused, waiting on a condition variable up to a
timeout when there is none (a wake-up costs what it costs a dramatiq worker
thread). Thread-safe.

A queue with nothing buffered is *idle* (its weight goes to the others) only
once its fetcher has found the broker side empty (:meth:`Intake.mark_empty`).
Until then (its fetcher still connecting, or refilling) it is *pending*: a
worker whose turn falls on it waits for its message, up to ``grace`` seconds,
rather than give the turn away — so shares follow the weights from the first
task on, and a queue that is really empty costs a wait once, not per task.
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

    def __init__(
        self, queues: Mapping[str, int], *, strict: bool = False, grace: float = 1.0
    ) -> None:
        self.picker = Picker(queues, strict=strict)
        self.grace = grace
        self._lock = threading.Lock()
        self._ready_cond = threading.Condition(self._lock)
        self._pending_cond = threading.Condition(self._lock)
        self._empty: set[str] = set()
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

    def _live(self, queue: str) -> bool:
        """Buffered, or pending: not known empty on the broker side."""
        return queue not in self._paused and (
            bool(self._buffers[queue]) or queue not in self._empty
        )

    def put(self, job: Job) -> None:
        """Add a fetched message; wakes one waiting worker."""
        with self._lock:
            self._buffers[job.queue].append(job)
            self._empty.discard(job.queue)
            self._ready_cond.notify()
            self._pending_cond.notify_all()

    def mark_empty(self, queue: str) -> None:
        """The fetcher of ``queue`` found nothing (or cannot reach the broker): with its
        buffer empty the queue is idle, and its turns go to the others until a put."""
        with self._lock:
            if queue not in self._empty:
                self._empty.add(queue)
                self._pending_cond.notify_all()

    def take(self, timeout: float) -> Job | None:
        """The next message by the picker's choice, waiting up to ``timeout`` seconds for
        one; None when none came or the intake is closed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self.closed:
                queue = self.picker.pick(self._live)
                if queue is not None and self._await(queue, deadline):
                    self._room.notify_all()
                    return self._buffers[queue].popleft()
                remaining = deadline - time.monotonic()
                if queue is not None and remaining > 0:
                    continue  # it turned out idle: pick again among the others
                if remaining <= 0 or not self._ready_cond.wait(remaining):
                    return None
            return None

    def _await(self, queue: str, deadline: float) -> bool:
        """With the lock held: wait until ``queue`` (the picked, pending queue) has a
        message, up to ``grace``; False when it is idle after all (or time is up)."""
        buffer = self._buffers[queue]
        if buffer:
            return True
        grace_end = time.monotonic() + self.grace
        self._pending_cond.wait_for(
            lambda: bool(buffer) or self.closed or not self._live(queue),
            min(deadline, grace_end) - time.monotonic(),
        )
        if buffer and not self.closed and queue not in self._paused:
            return True
        if not buffer and time.monotonic() >= grace_end:
            self._empty.add(queue)  # no word from its fetcher: idle until a put
        if buffer:
            self._ready_cond.notify()  # another worker may take it
        return False

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
            self._pending_cond.notify_all()

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
            self._pending_cond.notify_all()
            self._room.notify_all()

    def open(self) -> None:
        """Workers take messages (again)."""
        with self._lock:
            self.closed = False
