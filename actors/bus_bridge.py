"""``BusBridge``: carry an EventBus's events through a broker stream, across processes.

A bridge is an actor with a small subtree:

- events published on the bus whose topic matches the bridge's patterns go to
  the bridge instead of local subscribers; it publishes them (encoded by an
  :class:`EventCodec`, topic in the ``troupe-topic`` header) with a
  :class:`~troupe.brokers.ProducerBridge`. A ``publish(..., wait=True)``
  returns once the broker confirmed the event;
- a :class:`~troupe.brokers.ConsumerBridge` in consumer group ``group`` reads
  the stream and publishes each event to the local subscribers
  (``local=True``, waiting for every handler); the entry is acked only after
  they all succeeded, so failures are redelivered and finally dead-lettered
  by the broker (at-least-once: subscribers must be idempotent).

Every process that runs a bridge with the same ``group`` shares the stream's
events (each event is handled by one of them); different groups each get all.

>>> # system.spawn(BusBridge, bus, connect("redis://127.0.0.1:6379"), "orders.events",
>>> #              group="orders", codec=DataclassCodec([OrderPlaced]))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from troupe.actor import Actor
from troupe.brokers import Broker, ConsumerBridge, ProducerBridge, Publish
from troupe.ref import ActorRef

from .bus import TOPIC_HEADER, WAIT_HEADER, EventBus, event_topic

logger = logging.getLogger(__name__)


class EventCodec(Protocol):
    """Turns events into JSON-compatible payloads and back."""

    def encode(self, event: Any) -> Any: ...

    def decode(self, payload: Any) -> Any: ...


class DataclassCodec:
    """Dataclass events as ``{"type": name, "data": fields}``; other JSON values as they are."""

    def __init__(self, types: Iterable[type[Any]] = ()) -> None:
        self.types = {cls.__name__: cls for cls in types}

    def encode(self, event: Any) -> Any:
        cls = type(event)
        if dataclasses.is_dataclass(event) and not isinstance(event, type):
            if self.types.get(cls.__name__) is not cls:
                raise TypeError(
                    f"event class {cls.__name__} is not registered with the bridge's codec; "
                    "pass it in DataclassCodec([...])"
                )
            return {"type": cls.__name__, "data": dataclasses.asdict(event)}
        return {"type": None, "data": event}

    def decode(self, payload: Any) -> Any:
        kind = payload["type"]
        if kind is None:
            return payload["data"]
        try:
            cls = self.types[kind]
        except KeyError:
            raise ValueError(f"unknown event type {kind!r}; register it in the codec") from None
        return cls(**payload["data"])


class BusBridge(Actor):
    """Routes ``patterns`` of ``bus`` through ``stream`` on ``broker`` (see the module doc).

    Without ``group`` the bridge only sends (nothing in this process consumes).
    """

    def __init__(
        self,
        bus: EventBus,
        broker: Broker,
        stream: str,
        *,
        patterns: Iterable[str | type] = ("#",),
        group: str | None = None,
        codec: EventCodec | None = None,
        consumer: str | None = None,
        max_deliveries: int = 5,
        block: float = 0.1,
    ) -> None:
        self.bus = bus
        self.broker = broker
        self.stream = stream
        self.patterns = tuple(patterns)
        self.group = group
        self.codec: EventCodec = codec or DataclassCodec()
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self.block = block
        self.producer: ActorRef | None = None
        # route at once: events published before on_start finished (or while a restart
        # is pending) wait in our mailbox; the bus drops the route when we stop
        bus.bridge(self.ref, *self.patterns)

    async def on_start(self) -> None:
        await self.broker.connect()
        self.producer = self.spawn(
            ProducerBridge, self.broker, self.stream, name=f"{self.name}.producer"
        )
        if self.group is not None:
            inbound = self.spawn(_Inbound, self.bus, self.codec, name=f"{self.name}.in")
            self.spawn(
                ConsumerBridge,
                self.broker,
                self.stream,
                self.group,
                inbound,
                consumer=self.consumer,
                max_deliveries=self.max_deliveries,
                block=self.block,
                name=f"{self.name}.consumer",
            )

    async def receive(self, event: Any) -> Any:
        """Publish a bus event to the stream.

        For ``publish(..., wait=True)`` the reply (the message id) means the broker
        has the event; fire-and-forget events are handed to the producer, which
        batches them and counts failures in its stats.
        """
        assert self.producer is not None
        headers = self.headers
        try:
            payload = self.codec.encode(event)
        except Exception as exc:  # a bad event must not take the bridge down
            logger.warning("bus bridge %s cannot encode %r: %s", self.name, event, exc)
            if headers.get(WAIT_HEADER):
                return exc  # the waiting publisher gets it in its ExceptionGroup
            self.system.dead_letters.publish(event, self.name, f"cannot encode: {exc}")
            return None
        publish = Publish(payload, headers={TOPIC_HEADER: event_topic(headers, event)})
        if headers.get(WAIT_HEADER):
            return await self.producer.ask(publish)
        await self.producer.tell(publish)
        return None


class _Inbound(Actor):
    """Publishes what the consumer bridge delivers to the local subscribers."""

    def __init__(self, bus: EventBus, codec: EventCodec) -> None:
        self.bus = bus
        self.codec = codec

    async def receive(self, payload: Any) -> int:
        event = self.codec.decode(payload)
        topic = self.headers.get(TOPIC_HEADER) or None
        return await self.bus.publish(event, topic=topic, wait=True, local=True)
