"""Sharded entities: one actor per key, placed by the broker, with durable state.

>>> from troupe.actors.entities import Entities, Entity

- :class:`Entity`: the user's class; ``self.key``, ``self.state`` (JSON), ``handle``.
- :class:`Entities`: one entity type in this process: hosts its share of the keys
  (Kafka partitions, or shard streams / RabbitMQ queues under fenced leases) and makes
  refs by key (``tell``, ``send``, ``ask``: a reply through the remote inbox).
- :class:`EntityHost`: the actor that applies a consumer's messages to its entities
  and saves their state with the source position (a redelivery is not applied twice).
"""

from .entity import Entity
from .host import EntityHost, EntitySettings, ShardMoved
from .placement import LeasePlacement, PartitionPlacement
from .sharding import Entities, EntityRef, default_store, shard_of
from .stats import EntityStats

__all__ = [
    "Entities",
    "Entity",
    "EntityHost",
    "EntityRef",
    "EntitySettings",
    "EntityStats",
    "LeasePlacement",
    "PartitionPlacement",
    "ShardMoved",
    "default_store",
    "shard_of",
]
