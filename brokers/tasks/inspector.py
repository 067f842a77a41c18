"""Inspect and manage task queues: sizes, scheduled, retrying and dead tasks; requeue or
delete a dead task; pause and resume a queue; cancel a task by id.

>>> from troupe.brokers.tasks import TaskClient, open_broker
>>> broker = open_broker("stub://doc-inspector")
>>> _ = TaskClient(broker).enqueue("report", queue="low")
>>> [(q.queue, q.size, q.in_flight) for q in queue_stats(broker)]
[('low', 1, 0)]

On Redis it reads dramatiq's keys (``NS:QUEUE`` list and ``.msgs`` hash,
``.DQ`` for scheduled and retrying tasks, the ``.XQ`` sorted set for dead
ones); on the StubBroker its in-process queues; on RabbitMQ the queues'
counts (a passive ``queue.declare``), and it lists a queue by getting its
messages without acking them (a dead task is requeued or deleted by acking
just that one). Queue names come from :mod:`.catalog`. Scheduled tasks a
delay fetcher holds until their time are listed from the process running it
(Redis lists them from any process). Running tasks, and RabbitMQ's messages in
flight, come from the pools' reports in the control store (:mod:`.activity`):
with RabbitMQ that needs a shared (Redis) control store. A message that does
not decode is listed as malformed, with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from troupe.errors import ConfigError, TroupeError

from .activity import worker_states
from .catalog import RabbitSession, known_queues
from .client import UNIQUE_KEY
from .consumers import REASON_HEADER
from .control import ControlStore, control_for
from .fetcher import held_messages
from .redis_queues import RedisQueues
from .transport import broker_kind, canonical, dead_queue, delay_queue

logger = logging.getLogger(__name__)

#: How long :meth:`Inspector.cancel` looks for a task that may be between fetch and run.
CANCEL_LOOKUP = 1.0


class InspectError(TroupeError):
    """An inspector action cannot be done; the message says why."""


class UnknownQueue(InspectError):
    """No queue of that name on the broker."""


class UnknownTask(InspectError):
    """No queued, scheduled or running task has that id."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: ``size`` (waiting to be fetched), ``in_flight`` (fetched by a worker,
    not yet acked; None when the broker cannot tell: RabbitMQ without a shared control
    store), ``scheduled`` (waiting for their time, retries included), ``retrying`` (of
    those, retries), ``dead``, ``paused``."""

    queue: str
    size: int
    in_flight: int | None
    scheduled: int
    retrying: int
    dead: int
    paused: bool

    @property
    def pending(self) -> int:
        """Waiting or running: ``size + in_flight``."""
        return self.size + (self.in_flight or 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pending": self.pending}


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task message as the inspector shows it; a message that does not decode is
    ``malformed``, its id the broker's handle and ``error`` the reason."""

    id: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int
    eta: float | None
    error: str | None
    malformed: bool = False

    @classmethod
    def of(cls, message: Any) -> TaskRecord:
        options = message.options
        eta = options.get("eta")
        trace = options.get("traceback")
        error = trace.strip().splitlines()[-1] if isinstance(trace, str) and trace.strip() else None
        return cls(
            message.message_id,
            message.actor_name,
            canonical(message.queue_name),
            list(message.args),
            dict(message.kwargs),
            int(options.get("retries", 0)),
            eta / 1000 if isinstance(eta, int | float) else None,
            error,
        )

    @classmethod
    def broken(cls, handle: Any, queue: str, data: bytes, exc: Exception) -> TaskRecord:
        """The record of a message that does not decode."""
        ident = handle.decode() if isinstance(handle, bytes) else str(handle)
        cause = exc.__cause__ or exc
        return cls(
            ident,
            "?",
            canonical(queue),
            [],
            {},
            0,
            None,
            f"malformed message ({len(data)} bytes): {cause}",
            True,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ActiveTask:
    """A task a worker pool runs now (from its report)."""

    id: str
    task: str
    queue: str
    started: float
    worker: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode(handle: Any, queue: str, data: bytes) -> Message[Any] | TaskRecord:
    """The message in ``data``, or the malformed record when it does not decode."""
    try:
        return Message.decode(data)
    except dramatiq.errors.DecodeError as exc:
        return TaskRecord.broken(handle, queue, data, exc)


def _record(item: Message[Any] | TaskRecord) -> TaskRecord:
    return item if isinstance(item, TaskRecord) else TaskRecord.of(item)


def queue_stats(
    broker: dramatiq.Broker, control: ControlStore | None = None, names: list[str] | None = None
) -> list[QueueStats]:
    """Per queue of ``broker`` (or of ``names``): size, in flight, scheduled, retrying,
    dead, paused. What ``troupe tasks queues`` prints and the observer shows."""
    return Inspector(broker, control).queues(names)


class Inspector:
    """Queue state and task management on one dramatiq broker."""

    def __init__(self, broker: dramatiq.Broker, control: ControlStore | None = None) -> None:
        self.broker = broker
        self.kind = broker_kind(broker)
        if self.kind not in ("stub", "redis", "rabbitmq"):
            raise ConfigError("broker", f"cannot inspect a {type(broker).__name__}")
        self.control = control if control is not None else control_for(broker)

    # -- reading ---------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        """The queues of the deployment (see :mod:`.catalog`)."""
        return sorted(known_queues(self.broker))

    def require_queue(self, queue: str) -> None:
        """Raise :class:`UnknownQueue` unless ``queue`` exists on the broker."""
        known = self.queue_names()
        if queue in known:
            return
        if self.kind == "rabbitmq":
            with RabbitSession(self.broker) as session:
                if session.count(queue) is not None:
                    return
        listed = ", ".join(known) or "none"
        raise UnknownQueue(f"no queue named {queue!r} on this broker (queues: {listed})")

    def queues(self, names: list[str] | None = None) -> list[QueueStats]:
        """Stats of ``names`` (default: :meth:`queue_names`)."""
        queues = names if names is not None else self.queue_names()
        paused = self.control.paused()
        reports = self._reports()
        stats = []
        for queue in queues:
            size, in_flight, scheduled, dead = self._sizes(queue, reports)
            retrying = sum(1 for r in self.scheduled(queue) if r.retries > 0) if scheduled else 0
            stats.append(
                QueueStats(queue, size, in_flight, scheduled, retrying, dead, queue in paused)
            )
        return stats

    def pending(self, queue: str) -> list[TaskRecord]:
        """Tasks waiting on ``queue`` to be fetched, oldest first."""
        return [_record(m) for m in self._waiting(queue)]

    def active(self, queue: str | None = None) -> list[ActiveTask]:
        """Tasks the worker pools run now (of ``queue``, or all)."""
        found = []
        for report in self._reports():
            for task in report.get("running", ()):
                if queue is None or task["queue"] == queue:
                    found.append(
                        ActiveTask(
                            task["id"],
                            task["task"],
                            task["queue"],
                            task["started"],
                            report["worker"],
                        )
                    )
        return sorted(found, key=lambda t: t.started)

    def scheduled(self, queue: str) -> list[TaskRecord]:
        """Tasks waiting for their time on ``queue`` (retries included), soonest first."""
        records = [_record(m) for m in self._messages(delay_queue(queue))]
        return sorted(records, key=lambda r: r.eta or 0.0)

    def retrying(self, queue: str) -> list[TaskRecord]:
        """Scheduled tasks that are retries of failed attempts."""
        return [r for r in self.scheduled(queue) if r.retries > 0]

    def dead(self, queue: str) -> list[TaskRecord]:
        """Tasks in ``queue``'s dead-letter queue; a message dead-lettered without running
        (it did not decode) shows the reason it was given."""
        reasons = self._dead_reasons(queue)
        records = [_record(m) for _, m in self._dead(queue)]
        return [replace(r, error=reasons[r.id]) if r.id in reasons else r for r in records]

    # -- acting --------------------------------------------------------------------------

    def requeue_dead(self, queue: str, task_id: str) -> bool:
        """Put a dead task back on its queue with its retries reset; False if not found."""
        for handle, message in self._dead(queue):
            if not isinstance(message, TaskRecord) and message.message_id == task_id:
                self._remove_dead(queue, handle)
                fresh = message.copy(queue_name=queue, options={"retries": 0})
                for key in ("traceback", "eta", "requeue_timestamp"):
                    fresh.options.pop(key, None)
                self.broker.enqueue(fresh)
                return True
        return False

    def delete_dead(self, queue: str, task_id: str) -> bool:
        """Remove a dead task (or a malformed dead message, by its id) for good; False if
        not found."""
        for handle, message in self._dead(queue):
            if _record(message).id == task_id:
                self._remove_dead(queue, handle)
                return True
        return False

    def pause(self, queue: str) -> None:
        """Workers stop taking tasks from ``queue`` (within their poll interval);
        :class:`UnknownQueue` when there is no such queue."""
        self.require_queue(queue)
        self.control.set_paused(queue, True)

    def resume(self, queue: str) -> None:
        """Workers take tasks from ``queue`` again."""
        self.require_queue(queue)
        self.control.set_paused(queue, False)

    def cancel(self, task_id: str, *, force: bool = False) -> str:
        """Cancel a queued or scheduled task (it will not run; its unique lock is
        released now) or a running one (async: interrupted). Returns where it was
        (``queued``, ``running``, or ``unknown`` with ``force``); without ``force``,
        :class:`UnknownTask` when no queued, scheduled or running task has the id."""
        self.control.cancel(task_id)  # first: a task fetched meanwhile is skipped
        message = self._find_waiting(task_id)
        where = "queued" if message is not None else None
        deadline = time.monotonic() + CANCEL_LOOKUP
        while where is None:
            if any(t.id == task_id for t in self.active()):
                where = "running"
            elif force:
                where = "unknown"
            elif time.monotonic() >= deadline:
                self.control.uncancel(task_id)
                raise UnknownTask(
                    f"no queued, scheduled or running task has id {task_id!r} (it finished, "
                    "is dead, or was never enqueued); nothing cancelled"
                )
            else:
                time.sleep(0.05)
        key = message.options.get(UNIQUE_KEY) if message is not None else None
        if key is not None:
            self.control.release(key, task_id)
        return where

    # -- per broker --------------------------------------------------------------------------

    def _reports(self) -> list[dict[str, Any]]:
        return worker_states(self.broker, self.control.reports())

    def _ns(self) -> str:
        return str(getattr(self.broker, "namespace", "dramatiq"))

    def _client(self) -> Any:
        return getattr(self.broker, "client")  # noqa: B009 (RedisBroker's public attribute)

    def _sizes(self, queue: str, reports: list[dict[str, Any]]) -> tuple[int, int | None, int, int]:
        broker = self.broker
        if isinstance(broker, StubBroker):
            main = broker.queues.get(queue)
            delayed = broker.queues.get(delay_queue(queue))
            size = main.qsize() if main is not None else 0
            return (
                size,
                main.unfinished_tasks - size if main is not None else 0,
                delayed.unfinished_tasks if delayed is not None else 0,
                len(broker.dead_letters_by_queue.get(queue, ())),
            )
        if self.kind == "redis":
            ns, client = self._ns(), self._client()
            pipe = client.pipeline()
            pipe.llen(f"{ns}:{queue}")
            pipe.hlen(f"{ns}:{queue}.msgs")
            pipe.hlen(f"{ns}:{delay_queue(queue)}.msgs")
            pipe.zcard(f"{ns}:{dead_queue(queue)}")
            size, stored, scheduled, dead = (int(n) for n in pipe.execute())
            return size, max(0, stored - size), scheduled, dead
        with RabbitSession(broker) as session:
            size, delayed, dead = (
                session.count(q) or 0 for q in (queue, delay_queue(queue), dead_queue(queue))
            )
        held = len(held_messages(broker, delay_queue(queue)))
        in_flight = None
        if reports or self.control.shared:
            in_flight = sum(
                report.get("buffered", {}).get(queue, 0)
                + sum(1 for t in report.get("running", ()) if t["queue"] == queue)
                for report in reports
            )
        return size, in_flight, delayed + held, dead

    def _waiting(self, queue: str) -> list[Message[Any] | TaskRecord]:
        """Messages of ``queue`` not yet fetched, in order."""
        broker = self.broker
        if isinstance(broker, StubBroker):
            q = broker.queues.get(queue)
            datas = list(q.queue) if q is not None else []
            return [decode(i, queue, d) for i, d in enumerate(datas)]
        if self.kind == "redis":
            ns, client = self._ns(), self._client()
            ids = client.lrange(f"{ns}:{queue}", 0, -1)
            datas = client.hmget(f"{ns}:{queue}.msgs", ids) if ids else []
            return [decode(i, queue, d) for i, d in zip(ids, datas, strict=True) if d is not None]
        with RabbitSession(broker) as session:
            return [decode(tag, queue, body) for tag, body in session.bodies(queue)]

    def _messages(self, queue: str) -> list[Message[Any] | TaskRecord]:
        broker = self.broker
        if isinstance(broker, StubBroker):
            held: list[Message[Any] | TaskRecord] = [p.copy() for p in held_messages(broker, queue)]
            return self._waiting(queue) + held
        if self.kind == "redis":
            items = self._client().hgetall(f"{self._ns()}:{queue}.msgs").items()
            return [decode(k, queue, v) for k, v in items]
        held = [p.copy() for p in held_messages(broker, queue)]
        return self._waiting(queue) + held

    def _find_waiting(self, task_id: str) -> Message[Any] | None:
        """The queued or scheduled (or, on Redis, fetched) message with id ``task_id``."""
        needle = task_id.encode()
        for queue in self.queue_names():
            for name in (queue, delay_queue(queue)):
                if self.kind == "redis":
                    datas: Iterable[Any] = self._client().hvals(f"{self._ns()}:{name}.msgs")
                    candidates = [decode(None, name, d) for d in datas if needle in d]
                else:
                    candidates = self._messages(name)
                for item in candidates:
                    if isinstance(item, Message) and item.message_id == task_id:
                        return item
        return None

    def _dead(self, queue: str) -> list[tuple[Any, Any]]:
        broker = self.broker
        if isinstance(broker, StubBroker):
            return [(p, p) for p in list(broker.dead_letters_by_queue.get(queue, ()))]
        if self.kind == "redis":
            ns, client = self._ns(), self._client()
            ids = client.zrange(f"{ns}:{dead_queue(queue)}", 0, -1)
            if not ids:
                return []
            datas = client.hmget(f"{ns}:{dead_queue(queue)}.msgs", ids)
            return [
                (i, decode(i, queue, d)) for i, d in zip(ids, datas, strict=True) if d is not None
            ]
        with RabbitSession(broker) as session:
            items = [decode(tag, queue, body) for tag, body in session.bodies(dead_queue(queue))]
        return [(_record(m).id, m) for m in items]

    def _dead_reasons(self, queue: str) -> dict[str, str]:
        """Why messages of ``queue`` were dead-lettered without running, by record id:
        Redis keeps them in a hash, RabbitMQ in each message's ``x-troupe-reason`` header."""
        broker = self.broker
        if isinstance(broker, StubBroker):
            return {}
        if self.kind == "redis":
            return RedisQueues(broker).reasons(queue)
        found: dict[str, str] = {}
        with RabbitSession(broker) as session:
            for tag, body, headers in session.messages(dead_queue(queue)):
                reason = headers.get(REASON_HEADER)
                if reason is not None:
                    found[_record(decode(tag, queue, body)).id] = str(reason)
        return found

    def _remove_dead(self, queue: str, handle: Any) -> None:
        broker = self.broker
        if isinstance(broker, StubBroker):
            broker.dead_letters_by_queue[queue].remove(handle)
            return
        if self.kind == "rabbitmq":
            self._rabbit_take(dead_queue(queue), str(handle))
            return
        ns, client = self._ns(), self._client()
        pipe = client.pipeline()
        pipe.zrem(f"{ns}:{dead_queue(queue)}", handle)
        pipe.hdel(f"{ns}:{dead_queue(queue)}.msgs", handle)
        pipe.execute()

    def _rabbit_take(self, queue: str, task_id: str) -> bool:
        """Remove the message ``task_id`` (or the malformed one with that tag) from
        ``queue`` (ack it); the others go back."""
        with RabbitSession(self.broker) as session:
            for tag, body in session.bodies(queue):
                if _record(decode(tag, queue, body)).id == task_id:
                    session.ack(tag)
                    return True
        return False
