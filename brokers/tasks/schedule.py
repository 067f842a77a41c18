"""The Redis delay fetcher: scheduled tasks and retries kept in order of their eta.

dramatiq's ``NAME.DQ`` is a list: a fetcher that holds a bounded number of its
messages in memory (as a dramatiq worker does, ``concurrency * 1000``) lets
near-due tasks wait behind far-future ones. :class:`ScheduleFetcher` instead
moves every arrival on ``NAME.DQ`` into a sorted set by eta in Redis (see
:mod:`~troupe.brokers.tasks.redis_queues`) and, each poll, moves what is due
onto ``NAME``, earliest first. Nothing is held in the process: every pool
on the queue shares the schedule, and a crash leaves it as it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.common import current_millis
from dramatiq.errors import DecodeError

from troupe import ThreadActor

from .consumers import undecodable
from .intake import Intake
from .redis_queues import RedisQueues
from .transport import Outage, connection_errors, delay_queue

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = connection_errors()
TURN = 0.2
_FETCH = "fetch"


class ScheduleFetcher(ThreadActor):
    """Schedules ``NAME.DQ`` arrivals by eta and releases due ones onto ``NAME`` (Redis);
    ``batch``: messages moved per script call."""

    def __init__(
        self,
        broker: dramatiq.Broker,
        intake: Intake,
        queue: str,
        redis: RedisQueues,
        poll_ms: int,
        batch: int = 500,
    ) -> None:
        self.broker = broker
        self.intake = intake
        self.queue = queue
        self.delay_queue = delay_queue(queue)
        self.redis = redis
        self.poll = poll_ms / 1000
        self.batch = batch
        self.outage = Outage(f"task schedule of {queue!r}")

    def on_start(self) -> None:
        self.broker.declare_queue(self.queue)
        self.ref.tell(_FETCH)

    def receive(self, message: Any) -> None:
        end = time.monotonic() + TURN
        try:
            while not self.intake.closed and not self.system.is_closing:
                moved = self.collect() + self.release()
                self.outage.recovered()
                if moved:
                    continue
                wait = end - time.monotonic()
                if wait <= 0:
                    break
                time.sleep(min(wait, self.poll, self._until_next()))
        except CONNECTION_ERRORS as exc:
            time.sleep(self.outage.failed(exc))
        if not self.intake.closed and not self.system.is_closing:
            self.ref.tell(_FETCH)

    def _until_next(self) -> float:
        eta = self.redis.next_eta(self.queue)
        return self.poll if eta is None else max(0.0, (eta - current_millis()) / 1000)

    def collect(self) -> int:
        """Move arrivals on ``NAME.DQ`` into the schedule; how many were taken."""
        taken = self.redis.take(self.delay_queue, self.batch)
        etas: list[tuple[str, int]] = []
        for redis_id, data in taken:
            try:
                message = Message.decode(data)
            except DecodeError as exc:
                self._bury(redis_id, exc)
                continue
            eta = message.options.get("eta")
            etas.append((redis_id, int(eta) if isinstance(eta, int | float) else current_millis()))
        self.redis.schedule(self.queue, etas)
        return len(taken)

    def release(self) -> int:
        """Move the due messages onto ``NAME``, earliest first; how many were due."""
        due = self.redis.due(self.queue, current_millis(), self.batch)
        moves: list[tuple[str, str, bytes]] = []
        for redis_id, data in due:
            try:
                message = Message.decode(data)
            except DecodeError as exc:
                self._bury(redis_id, exc)
                continue
            new_id = str(uuid.uuid4())
            ready = message.copy(queue_name=self.queue, options={"redis_message_id": new_id})
            ready.options.pop("eta", None)
            moves.append((redis_id, new_id, ready.encode()))
        self.redis.promote(self.queue, moves)
        return len(due)

    def _bury(self, redis_id: str, exc: BaseException) -> None:
        reason = undecodable(exc)
        logger.error(
            "queue %s: scheduled message %s does not decode (%s); dead-lettered with its bytes",
            self.delay_queue,
            redis_id,
            reason,
        )
        self.redis.bury(self.delay_queue, redis_id, reason)
