"""What a worker pool is doing, published to the control store for inspectors.

Each pool's watcher calls :func:`report_pool` on every poll: the tasks its
workers run now (id, type, queue, start time) and how many fetched messages
wait in its intake per queue. The report lives a few poll intervals
(:func:`report_ttl`), so a pool that stopped or died drops out by itself.
:class:`~troupe.brokers.tasks.Inspector` reads them (active tasks, messages
in flight) from any process that shares the control store, and the live state
of the pools in its own process (:func:`worker_states`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import WorkerPool

logger = logging.getLogger(__name__)

_live: weakref.WeakKeyDictionary[Any, weakref.WeakSet[WorkerPool]] = weakref.WeakKeyDictionary()
_live_lock = threading.Lock()


def worker_id(name: str) -> str:
    """A pool's id in reports: host, pid, name and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:8]}"


def report_ttl(poll_interval: float) -> float:
    """How long a report lives: ten polls, at least 2 s."""
    return max(2.0, 10 * poll_interval)


def pool_state(pool: WorkerPool) -> dict[str, Any]:
    """The report of ``pool`` (JSON-able)."""
    running = [
        {"id": ctx.id, "task": ctx.task, "queue": ctx.queue, "started": ctx.started}
        for ctx in pool.runner.running()
    ]
    return {
        "worker": pool.worker_id,
        "name": pool.name,
        "at": time.time(),
        "buffered": {queue: pool.intake.buffered(queue) for queue in pool.queues},
        "running": running,
    }


def report_pool(pool: WorkerPool) -> None:
    """Publish ``pool``'s state to its control store (and list it as live here)."""
    with _live_lock:
        _live.setdefault(pool.broker, weakref.WeakSet()).add(pool)
    pool.control.report(pool.worker_id, pool_state(pool), report_ttl(pool.poll_interval))


def worker_states(broker: Any, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``reports`` with the live state of this process's running pools on ``broker`` in
    place of their (older) reports."""
    with _live_lock:
        pools = list(_live.get(broker, ()))
    states = {r["worker"]: r for r in reports}
    states.update((p.worker_id, pool_state(p)) for p in pools)
    return list(states.values())
