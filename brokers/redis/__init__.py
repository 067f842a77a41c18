"""Redis Streams: consumer groups, the pending list and claims, behind the delivery contract.

``connect("redis://host:6379/0")`` (or ``rediss://`` for TLS) returns a
:class:`RedisBroker`; :class:`RedisIdempotencyStore` is the inbox on Redis
(``SET NX`` with a lease). The modules: ``broker`` (connection and streams),
``session`` (a consumer group member: fetch, claim, ack, attempts), ``publish``
(stored-once publishing, one Lua script), ``idempotency``, ``state`` (entity state
and fenced shard leases).
"""

from .broker import RedisBroker
from .idempotency import RedisIdempotencyStore
from .state import RedisShardLeases, RedisStateStore

__all__ = ["RedisBroker", "RedisIdempotencyStore", "RedisShardLeases", "RedisStateStore"]
