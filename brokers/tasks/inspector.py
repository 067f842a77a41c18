"""Inspect and manage task queues: sizes, scheduled, retrying and dead tasks; requeue or
delete a dead task; pause and resume a queue; cancel a task by id.

>>> from troupe.brokers.tasks import TaskClient, open_broker
>>> broker = open_broker("stub://doc-inspector")
>>> _ = TaskClient(broker).enqueue("report", queue="low")
>>> [(q.queue, q.pending) for q in Inspector(broker).queues()]
[('low', 1)]

On Redis it reads dramatiq's keys (``NS:QUEUE`` list and ``.msgs`` hash,
``.DQ`` for scheduled and retrying tasks, the ``.XQ`` sorted set for dead
ones); on the StubBroker its in-process queues; on RabbitMQ the queues'
counts, and it lists a queue by getting its messages without acking them (a
dead task is requeued or deleted by acking just that one). Scheduled tasks a
delay fetcher holds until their time are listed from the process running it
(Redis lists them from any process).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from troupe.errors import ConfigError

from .control import ControlStore, control_for
from .fetcher import held_messages
from .transport import broker_kind, canonical, dead_queue, delay_queue

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue: ``pending`` (waiting or running), ``scheduled`` (waiting for their
    time, retries included), ``retrying`` (of those, retries), ``dead``, ``paused``."""

    queue: str
    pending: int
    scheduled: int
    retrying: int
    dead: int
    paused: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task message as the inspector shows it."""

    id: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int
    eta: float | None
    error: str | None

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Inspector:
    """Queue state and dead-task management on one dramatiq broker."""

    def __init__(self, broker: dramatiq.Broker, control: ControlStore | None = None) -> None:
        self.broker = broker
        self.kind = broker_kind(broker)
        self.control = control if control is not None else control_for(broker)

    # -- reading ---------------------------------------------------------------------------

    def queue_names(self) -> list[str]:
        """The queues the broker knows (Redis: those with messages or dead tasks)."""
        names = {canonical(q) for q in self.broker.get_declared_queues()}
        if self.kind == "redis":
            ns = self._ns()
            for key in self._client().scan_iter(match=f"{ns}:*", count=1000):
                name = key.decode()[len(ns) + 1 :]
                if name.startswith("__"):
                    continue
                names.add(canonical(name.removesuffix(".msgs")))
        return sorted(names)

    def queues(self, names: list[str] | None = None) -> list[QueueStats]:
        """Sizes of ``names`` (default: :meth:`queue_names`)."""
        paused = self.control.paused()
        stats = []
        for queue in names if names is not None else self.queue_names():
            pending, scheduled, dead = self._sizes(queue)
            retrying = sum(1 for r in self.scheduled(queue) if r.retries > 0) if scheduled else 0
            stats.append(QueueStats(queue, pending, scheduled, retrying, dead, queue in paused))
        return stats

    def scheduled(self, queue: str) -> list[TaskRecord]:
        """Tasks waiting for their time on ``queue`` (retries included), soonest first."""
        records = [TaskRecord.of(m) for m in self._messages(delay_queue(queue))]
        return sorted(records, key=lambda r: r.eta or 0.0)

    def retrying(self, queue: str) -> list[TaskRecord]:
        """Scheduled tasks that are retries of failed attempts."""
        return [r for r in self.scheduled(queue) if r.retries > 0]

    def dead(self, queue: str) -> list[TaskRecord]:
        """Tasks in ``queue``'s dead-letter queue."""
        return [TaskRecord.of(m) for _, m in self._dead(queue)]

    # -- acting --------------------------------------------------------------------------

    def requeue_dead(self, queue: str, task_id: str) -> bool:
        """Put a dead task back on its queue with its retries reset; False if not found."""
        for handle, message in self._dead(queue):
            if message.message_id == task_id:
                self._remove_dead(queue, handle)
                fresh = message.copy(queue_name=queue, options={"retries": 0})
                for key in ("traceback", "eta", "requeue_timestamp"):
                    fresh.options.pop(key, None)
                self.broker.enqueue(fresh)
                return True
        return False

    def delete_dead(self, queue: str, task_id: str) -> bool:
        """Remove a dead task for good; False if not found."""
        for handle, message in self._dead(queue):
            if message.message_id == task_id:
                self._remove_dead(queue, handle)
                return True
        return False

    def pause(self, queue: str) -> None:
        """Workers stop taking tasks from ``queue`` (within their poll interval)."""
        self.control.set_paused(queue, True)

    def resume(self, queue: str) -> None:
        """Workers take tasks from ``queue`` again."""
        self.control.set_paused(queue, False)

    def cancel(self, task_id: str) -> None:
        """Cancel a queued task (it will not run) or a running one (async: interrupted)."""
        self.control.cancel(task_id)

    # -- per broker --------------------------------------------------------------------------

    def _ns(self) -> str:
        return str(getattr(self.broker, "namespace", "dramatiq"))

    def _client(self) -> Any:
        return getattr(self.broker, "client")  # noqa: B009 (RedisBroker's public attribute)

    def _sizes(self, queue: str) -> tuple[int, int, int]:
        broker = self.broker
        if isinstance(broker, StubBroker):
            main = broker.queues.get(queue)
            delayed = broker.queues.get(delay_queue(queue))
            return (
                main.unfinished_tasks if main is not None else 0,
                delayed.unfinished_tasks if delayed is not None else 0,
                len(broker.dead_letters_by_queue.get(queue, ())),
            )
        if self.kind == "redis":
            ns, client = self._ns(), self._client()
            pipe = client.pipeline()
            pipe.hlen(f"{ns}:{queue}.msgs")
            pipe.hlen(f"{ns}:{delay_queue(queue)}.msgs")
            pipe.zcard(f"{ns}:{dead_queue(queue)}")
            pending, scheduled, dead = pipe.execute()
            return int(pending), int(scheduled), int(dead)
        if self.kind == "rabbitmq":
            main, delayed, dead = broker.get_queue_message_counts(queue)  # type: ignore[attr-defined]
            held = len(held_messages(broker, delay_queue(queue)))
            return int(main), int(delayed) + held, int(dead)
        raise ConfigError("broker", f"cannot inspect a {type(broker).__name__}")

    def _messages(self, queue: str) -> list[Message[Any]]:
        broker = self.broker
        if isinstance(broker, StubBroker):
            q = broker.queues.get(queue)
            waiting = [Message.decode(d) for d in list(q.queue)] if q is not None else []
            return waiting + [p.copy() for p in held_messages(broker, queue)]
        if self.kind == "redis":
            values = self._client().hvals(f"{self._ns()}:{queue}.msgs")
            return [Message.decode(v) for v in values]
        if self.kind == "rabbitmq":
            held = [p.copy() for p in held_messages(broker, queue)]
            return self._rabbit_peek(queue) + held
        raise ConfigError("broker", f"cannot list tasks on a {type(broker).__name__}")

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
                (i, Message.decode(d)) for i, d in zip(ids, datas, strict=True) if d is not None
            ]
        if self.kind == "rabbitmq":
            return [(m.message_id, m) for m in self._rabbit_peek(dead_queue(queue))]
        raise ConfigError("broker", f"cannot list dead tasks on a {type(broker).__name__}")

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

    def _rabbit_channel(self) -> tuple[Any, Any]:
        import pika

        connection = pika.BlockingConnection(self.broker.parameters)  # type: ignore[attr-defined]
        return connection, connection.channel()

    def _rabbit_peek(self, queue: str) -> list[Message[Any]]:
        """Every ready message of ``queue``, left in it (got unacked, then requeued)."""
        connection, channel = self._rabbit_channel()
        try:
            messages: list[Message[Any]] = []
            while True:
                _method, _props, body = channel.basic_get(queue, auto_ack=False)
                if body is None:
                    return messages
                messages.append(Message.decode(body))
        finally:
            connection.close()  # unacked messages go back to the queue

    def _rabbit_take(self, queue: str, task_id: str) -> bool:
        """Remove the message ``task_id`` from ``queue`` (ack it); others stay."""
        connection, channel = self._rabbit_channel()
        try:
            while True:
                method, _props, body = channel.basic_get(queue, auto_ack=False)
                if body is None:
                    return False
                if Message.decode(body).message_id == task_id:
                    channel.basic_ack(method.delivery_tag)
                    return True
        finally:
            connection.close()
