"""Heartbeats and crash recovery for a pool on Redis.

dramatiq's Redis broker returns a dead worker's unacked messages only after a
60 s heartbeat timeout, and only during "maintenance", which runs on a random
0.1 % of commands: minutes, or never. A pool's :class:`Keeper` instead beats
every ``timeout / 5`` seconds (its own thread, whatever the workers are doing)
and, on the same timer, puts the unacked tasks of every troupe worker that has
not beaten for ``timeout`` seconds back at the head of their queues (see
:meth:`~troupe.brokers.tasks.redis_queues.RedisQueues.recover`). So a crashed
worker's tasks are back on their queues within ``1.2 * timeout`` seconds of
the crash, wherever another pool (or the restarted one) runs.
"""

from __future__ import annotations

import logging
from typing import Any

from troupe import ThreadActor

from .redis_queues import RedisQueues
from .transport import Outage, connection_errors

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = connection_errors()
_BEAT = "beat"


class Keeper(ThreadActor):
    """Beats for this pool's broker and recovers dead workers' tasks (module docstring);
    ``queues``: the Redis names this pool takes from (``NAME`` and ``NAME.DQ``)."""

    def __init__(self, redis: RedisQueues, queues: list[str], timeout: float) -> None:
        self.redis = redis
        self.queues = queues
        self.timeout = timeout
        self.interval = timeout / 5
        self.outage = Outage("task pool keeper (heartbeats, recovery)")

    def on_start(self) -> None:
        self.beat()
        self.timers.every(self.interval, _BEAT, key=_BEAT)

    def receive(self, message: Any) -> None:
        self.beat()

    def beat(self) -> None:
        """One heartbeat and one recovery pass."""
        try:
            self.redis.beat(self.queues)
            moved, dead = self.redis.recover(self.timeout)
        except CONNECTION_ERRORS as exc:
            self.outage.failed(exc)
            return
        self.outage.recovered()
        if moved:
            logger.warning(
                "%d task worker(s) silent for %s s: %d unacked task(s) back on their queues",
                dead,
                self.timeout,
                moved,
            )
        elif dead:
            logger.debug("%d stopped task worker(s) forgotten", dead)
