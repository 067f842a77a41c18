"""Entities on RabbitMQ: shard queues with a single active consumer, under fenced leases.

RabbitMQ has partitions of neither kind (no offsets, no key-value store), so an
entity type on it is:

- ``shards`` queues ``<kind>.<shard>`` (a key's shard is
  :func:`~troupe.actors.entities.shard_of`, as on Redis), declared with
  ``x-single-active-consumer``: RabbitMQ delivers a queue to one consumer at a time,
  and a consumer that subscribes while another still drains waits, then gets the
  drained deliveries first, in order;
- placed by :class:`~troupe.actors.entities.LeasePlacement`: a member consumes only
  the shards it holds a fenced lease for, and takes its fair share
  ``ceil(shards / live members)`` of the members heartbeating on the lease store (so
  the shards spread over the members instead of all going to the first subscriber);
  a rebalance stops the shard's bridge (the message in hand is finished, saved,
  acked), passivates its entities and releases the lease before the next owner can
  take it, and a save under a lost lease is refused by the store;
- the state store and the leases from elsewhere: RabbitMQ keeps neither.
  ``RedisStateStore`` with ``RedisShardLeases`` of the same Redis (across
  processes), or a ``MemoryStateStore`` made with the ``MemoryShardLeases`` passed
  (one process, tests). Other combinations could not fence a save and are refused;
- redeliveries recognised by message id (:class:`~.positions.MessageWindow`): the
  ids of the last ``2 x prefetch`` messages applied per shard are saved with its states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from troupe.brokers import Broker
from troupe.brokers.state import MemoryStateStore, ShardLeases, StateStore
from troupe.errors import ConfigError, require_at_least

from .positions import MessageWindow, Positions

SINGLE_ACTIVE = "x-single-active-consumer"
STORE_HELP = (
    "RabbitMQ keeps no entity state: pass store=RedisStateStore(redis) with "
    "leases=RedisShardLeases(redis) (the same Redis), or, in one process, "
    "store=MemoryStateStore(leases) with those MemoryShardLeases"
)


def check_store(store: StateStore | None, leases: ShardLeases | None) -> None:
    """Raise ConfigError unless ``store`` can fence saves with ``leases``."""
    if store is None:
        raise ConfigError("store", STORE_HELP)
    if leases is None:
        raise ConfigError("leases", f"shard leases are needed on rabbitmq; {STORE_HELP}")
    if isinstance(store, MemoryStateStore):
        if store.leases is not leases:
            raise ConfigError(
                "leases",
                "a MemoryStateStore fences saves only with the MemoryShardLeases it was "
                f"made with, and these are other leases; {STORE_HELP}",
            )
        return
    from troupe.brokers.redis import RedisShardLeases, RedisStateStore

    if isinstance(store, RedisStateStore):
        if not (
            isinstance(leases, RedisShardLeases)
            and leases.broker.url == store.broker.url
            and leases.prefix == store.prefix
        ):
            raise ConfigError(
                "leases",
                "a RedisStateStore fences saves with RedisShardLeases of the same Redis "
                f"and prefix; {STORE_HELP}",
            )
        return
    raise ConfigError("store", f"{type(store).__name__} cannot fence saves; {STORE_HELP}")


def declare_shards(broker: Broker, kind: str, shards: int) -> None:
    """Have ``broker`` (a RabbitBroker) declare the queues ``<kind>.<shard>`` with a single
    active consumer when first used; a process that publishes to the shards without an
    :class:`~troupe.actors.entities.Entities` of the type calls this first."""
    from troupe.brokers.rabbitmq import Queue, RabbitBroker

    if not isinstance(broker, RabbitBroker):
        raise ConfigError("broker", f"shard queues are RabbitMQ's, not {broker.url}'s")
    for shard in range(shards):
        name = f"{kind}.{shard}"
        queue = broker.topology.queue(name)
        arguments = {**queue.arguments, SINGLE_ACTIVE: True}
        broker.declare_as(Queue(name, queue.kind, arguments))


def shard_queues(
    broker: Broker,
    kind: str,
    shards: int,
    store: StateStore,
    batch: int,
    bridge: dict[str, Any],
) -> Callable[[], Positions]:
    """Declare the shard queues single-active-consumer (on first use) and set the
    bridges' prefetch (default ``2 x batch``); the hosts' redelivery check."""
    prefetch = bridge.setdefault("prefetch", 2 * batch)
    require_at_least("prefetch", prefetch, 1)
    declare_shards(broker, kind, shards)
    size = 2 * prefetch

    def positions() -> Positions:
        return MessageWindow(store, kind, size)

    return positions


__all__ = ["SINGLE_ACTIVE", "check_store", "declare_shards", "shard_queues"]
