"""``Entities``: one entity type across processes — placement, refs by key, stats.

>>> from troupe.actors.entities import Entities, Entity
>>> # inventory = Entities(system, broker, Stock, kind="inventory")
>>> # await inventory.start(); await inventory.ref("sku-1").tell({"add": 5})
"""

from __future__ import annotations

import os
import socket
import weakref
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from troupe.backoff import Backoff
from troupe.brokers import Broker, ProducerBridge, Publish
from troupe.brokers.state import MemoryShardLeases, MemoryStateStore, ShardLeases, StateStore
from troupe.errors import ConfigError, require_at_least
from troupe.ref import SYSTEM_TIMEOUT, ActorRef
from troupe.system import ActorSystem

from .asks import ask_entity
from .entity import Entity
from .host import DEFAULT_RETRY, EntitySettings
from .placement import LeasePlacement, PartitionPlacement
from .positions import Positions, SourcePositions
from .rabbitmq import check_store, shard_queues
from .stats import EntityStats

_MEMORY: weakref.WeakKeyDictionary[Broker, tuple[MemoryStateStore, MemoryShardLeases]] = (
    weakref.WeakKeyDictionary()
)


def default_store(broker: Broker) -> tuple[StateStore, ShardLeases | None]:
    """The state store (and shard leases) that suit ``broker``: a dict and in-process
    leases on ``memory://`` (shared by every user of that broker object), a hash per
    entity type and leases on Redis, a compacted changelog topic on Kafka."""
    name = broker.capabilities.name
    if name == "memory":
        found = _MEMORY.get(broker)
        if found is None:
            leases = MemoryShardLeases()
            found = _MEMORY[broker] = (MemoryStateStore(leases), leases)
        return found
    if name == "redis":
        from troupe.brokers.redis import RedisShardLeases, RedisStateStore

        return RedisStateStore(broker), RedisShardLeases(broker)  # type: ignore[arg-type]
    if name == "kafka":
        from troupe.brokers.kafka import KafkaChangelogStore

        return KafkaChangelogStore(broker), None  # type: ignore[arg-type]
    if name == "rabbitmq":
        from .rabbitmq import STORE_HELP

        raise ConfigError("store", STORE_HELP)
    raise ConfigError(
        "store", f"no default entity state store for {name}: pass store= and leases="
    )


def shard_of(key: str, shards: int) -> int:
    """The shard of ``key`` among ``shards`` (CRC-32: the same in every process).

    >>> shard_of("order-42", 16)
    14
    """
    return zlib.crc32(key.encode()) % shards


class EntityRef:
    """Sends messages to one entity, wherever it lives, through the broker."""

    __slots__ = ("entities", "key")

    def __init__(self, entities: Entities, key: str) -> None:
        self.entities = entities
        self.key = key

    async def tell(self, message: Any) -> None:
        """Publish ``message`` to the entity's partition or shard (batched, retried)."""
        await self.entities.producer.tell(self.entities.publish(self.key, message))

    async def send(self, message: Any) -> str:
        """Publish ``message`` and wait until the broker stored it; its message id."""
        result: str = await self.entities.producer.ask(self.entities.publish(self.key, message))
        return result

    async def ask(self, message: Any, *, timeout: float | None = SYSTEM_TIMEOUT) -> Any:
        """Publish ``message`` to the entity and return its handler's result, sent back
        once the entity's state is saved (through this system's remote inbox).

        ``timeout`` defaults to the system's ``ask_timeout`` (:class:`~troupe.AskTimeout`
        names ``<kind>:<key>``); a message the handler failed on (dead-lettered after
        ``max_attempts``) raises :class:`~troupe.actors.RemoteError`. The message is
        applied once, like a told one; the reply is at most once (a member killed
        after the save and before the reply leaves the ask to its timeout).
        """
        return await ask_entity(self.entities, self.key, message, timeout)

    def __repr__(self) -> str:
        return f"<EntityRef {self.entities.kind}:{self.key}>"


class Entities:
    """One entity type: start this member's share of the entities, and refs by key.

    ``entity`` is the :class:`Entity` subclass (or a factory taking the key); ``kind``
    names the type (the source topic / the shard streams ``<kind>.<n>``, the consumer
    group, the state's hash or changelog topic). Placement follows the broker: Kafka's
    partitions (the topic's partition count is the broker's ``partitions``), else
    ``shards`` shard streams owned through fenced leases of ``lease_ttl`` seconds (on
    RabbitMQ single-active-consumer shard queues; ``store`` and ``leases`` are then
    required: see :mod:`troupe.actors.entities.rabbitmq`).
    ``max_active`` bounds the entities kept in memory per host (least recently used
    leave first), ``passivate_after`` the idle seconds before one leaves;
    ``max_attempts`` in-place attempts of a failing message (``retry`` between them)
    before it is dead-lettered. ``bridge`` options go to each ConsumerBridge.
    """

    def __init__(
        self,
        system: ActorSystem,
        broker: Broker,
        entity: type[Entity] | Callable[[str], Entity],
        *,
        kind: str,
        store: StateStore | None = None,
        leases: ShardLeases | None = None,
        shards: int = 16,
        member: str | None = None,
        lease_ttl: float = 10.0,
        max_active: int = 10_000,
        passivate_after: float = 60.0,
        batch: int = 500,
        max_attempts: int = 3,
        retry: Backoff = DEFAULT_RETRY,
        **bridge: Any,
    ) -> None:
        require_at_least("shards", shards, 1)
        if not lease_ttl > 0:
            raise ConfigError(
                "lease_ttl", f"must be a positive number of seconds, got {lease_ttl!r}"
            )
        positions: Callable[[], Positions] = SourcePositions
        if broker.capabilities.name == "rabbitmq":
            check_store(store, leases)
            assert store is not None
            positions = shard_queues(broker, kind, shards, store, batch, bridge)
        elif store is None:
            store, default_leases = default_store(broker)
            leases = leases or default_leases
        self.system = system
        self.broker = broker
        self.kind = kind
        self.partitioned = broker.capabilities.offsets
        if not self.partitioned and leases is None:
            raise ConfigError("leases", f"shard leases are needed on {broker.capabilities.name}")
        self.leases = leases
        self.shards = shards
        self.lease_ttl = lease_ttl
        self.member = member or f"{socket.gethostname()}-{os.getpid()}-{kind}"
        self.settings = EntitySettings(
            kind,
            entity,
            store,
            broker,
            max_active=max_active,
            passivate_after=passivate_after,
            batch=batch,
            max_attempts=max_attempts,
            retry=retry,
            positions=positions,
        )
        self.bridge = bridge
        self._placement: ActorRef | None = None
        self._producer: ActorRef | None = None

    @property
    def stats(self) -> dict[int, EntityStats]:
        """Counters per shard (partition) hosted in this process."""
        return self.settings.stats

    @property
    def producer(self) -> ActorRef:
        """The producer bridge refs publish through (started on first use)."""
        if self._producer is None:
            self._producer = self.system.spawn(ProducerBridge, self.broker)
        return self._producer

    def publish(
        self, key: str, message: Any, headers: Mapping[str, str] | None = None
    ) -> Publish:
        """The :class:`Publish` that carries ``message`` to the entity ``key``."""
        stream = self.kind if self.partitioned else f"{self.kind}.{shard_of(key, self.shards)}"
        return Publish(message, stream=stream, key=key, headers=headers or {})

    def ref(self, key: str) -> EntityRef:
        """A ref to the entity ``key`` (usable before or without :meth:`start`)."""
        return EntityRef(self, key)

    async def start(self) -> None:
        """Host this member's share of the entities (idempotent)."""
        if self._placement is not None:
            return
        if self.partitioned:
            self._placement = self.system.spawn(
                PartitionPlacement, self.settings, self.member, **self.bridge,
                name=f"entities.{self.kind}.{self.member}",
            )
        else:
            assert self.leases is not None
            self._placement = self.system.spawn(
                LeasePlacement,
                self.settings,
                self.member,
                self.leases,
                self.shards,
                self.lease_ttl,
                **self.bridge,
                name=f"entities.{self.kind}.{self.member}",
            )

    async def stop(self) -> None:
        """Drain: finish the messages in hand, save, passivate, give the shards back."""
        placement, self._placement = self._placement, None
        if placement is not None:
            await placement.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


__all__ = ["Entities", "EntityRef", "default_store", "shard_of"]
