"""``EntityHost``: the actor that hosts the entities of one consumer's shards.

It is the target of a :class:`~troupe.brokers.ConsumerBridge`. Each turn it takes the
message in hand and those queued behind it (``take_queued``), activates the entities
they name (one ``load`` per shard), applies the messages in order, one entity at a
time, and saves every changed entity with the position of its last message in one
``save`` per shard; only then are the messages settled, so the bridge acks after the
state is durable. A message at or before an entity's saved position is skipped (a
redelivery after a crash). A handler that raises is retried in place (the entity's
later messages wait: per-key order is kept) and then dead-lettered with the reason.
A save that fails settles the shard's messages with the error, drops their entities
from memory and tells the placement (:class:`ShardAccess`), which stops that shard's
consumer so nothing after the failure is acked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from troupe import Queued
from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.brokers import Broker
from troupe.brokers.message import ENTRY_ID, ERROR_REASON, KEY, STREAM
from troupe.brokers.state import Fence, Saved, StateStore, position_key
from troupe.errors import ConfigError, TroupeError, require_at_least

from .asks import REPLY_TO, send_reply
from .entity import Entity
from .positions import Positions, SourcePositions
from .stats import EntityStats

logger = logging.getLogger(__name__)

DEFAULT_RETRY = Backoff(initial=0.05, maximum=1.0, multiplier=2.0, jitter="equal")


class ShardMoved(TroupeError):
    """A message of a shard this member no longer owns: not applied, its owner will."""


@dataclass(frozen=True)
class EntitySettings:
    """How entities of one type are kept; see :class:`~troupe.actors.entities.Entities`."""

    kind: str
    factory: Callable[[str], Entity]
    store: StateStore
    broker: Broker
    max_active: int = 10_000
    passivate_after: float = 60.0
    batch: int = 500
    max_attempts: int = 3
    retry: Backoff = DEFAULT_RETRY
    stats: dict[int, EntityStats] = field(default_factory=dict)
    #: how a host recognises redeliveries (one per host; default: by source position)
    positions: Callable[[], Positions] = SourcePositions

    def __post_init__(self) -> None:
        require_at_least("max_active", self.max_active, 1)
        require_at_least("batch", self.batch, 1)
        require_at_least("max_attempts", self.max_attempts, 1)
        if not self.passivate_after > 0:
            raise ConfigError(
                "passivate_after",
                f"must be a positive number of seconds, got {self.passivate_after!r}",
            )

    def shard_stats(self, shard: int) -> EntityStats:
        """The counters of ``shard`` (made on first use)."""
        stats = self.stats.get(shard)
        if stats is None:
            stats = self.stats[shard] = EntityStats()
        return stats


class ShardAccess(Protocol):
    """What a host asks its placement: the shard of a message, ownership, the fence."""

    def shard_of(self, headers: Mapping[str, str]) -> int:
        """The shard a delivered message came from."""
        ...

    def owns(self, shard: int) -> bool:
        """True while this member hosts ``shard``."""
        ...

    def fence(self, shard: int) -> Fence | None:
        """The lease saves of ``shard`` are made under (None: not fenced)."""
        ...

    def save_failed(self, shard: int, error: BaseException) -> None:
        """A save of ``shard`` failed: stop consuming it (what follows must not be acked)."""
        ...

    def host_failed(self, error: BaseException) -> None:
        """The host itself failed (and restarted): replace it and its bridges."""
        ...


_SWEEP = object()  # timer message: passivate idle entities


class EntityHost(Actor):
    """Hosts the entities of the shards its bridge delivers (see the module docstring)."""

    def __init__(self, settings: EntitySettings, access: ShardAccess) -> None:
        self.settings = settings
        self.access = access
        self.active: OrderedDict[str, Entity] = OrderedDict()  # least recently used first
        self._shard_of_key: dict[str, int] = {}
        self.positions = settings.positions()
        self.failed: BaseException | None = None  # set on a restart: reject, be replaced

    def on_restart(self, exc: BaseException) -> None:
        self.failed = exc
        logger.warning("entity host %s failed: %r; its shards are handed over", self.name, exc)
        self.access.host_failed(exc)
        self.on_start()

    def on_start(self) -> None:
        every = max(0.05, self.settings.passivate_after / 4)
        self.timers.every(every, _SWEEP, key="sweep")

    async def on_stop(self) -> None:
        for key in list(self.active):
            await self._passivate(key)

    async def receive(self, message: Any) -> None:
        current = self.take_current()
        items: list[Queued] = [] if current is None else [current]
        sweep = current is None and message is _SWEEP
        if current is None and not sweep:
            logger.warning("entity host %s ignores %r", self.name, message)
        for queued in self.take_queued(self.settings.batch - len(items)):
            if queued.message is _SWEEP:
                queued.resolve()
                sweep = True
            elif queued.asked:
                items.append(queued)
        if items and self.failed is not None:
            moved = ShardMoved(f"{self.settings.kind}: host {self.name} failed; being replaced")
            for queued in items:
                queued.reject(moved)
        elif items:
            await self._handle(items)
        if sweep:
            await self._sweep()

    # -- a batch ---------------------------------------------------------------------------

    async def _handle(self, items: Sequence[Queued]) -> None:
        settings, access = self.settings, self.access
        accepted: list[tuple[Queued, str, int]] = []
        missing: dict[int, list[str]] = {}
        for queued in items:
            key = queued.headers.get(KEY)
            if key is None or ENTRY_ID not in queued.headers:
                queued.reject(TroupeError(f"{settings.kind}: a message without a key"))
                continue
            shard = access.shard_of(queued.headers)
            if not access.owns(shard):
                queued.reject(ShardMoved(f"{settings.kind} shard {shard} moved away"))
                continue
            accepted.append((queued, key, shard))
            if key not in self.active and key not in missing.get(shard, ()):
                missing.setdefault(shard, []).append(key)
        failed: dict[int, BaseException] = {}
        for shard, keys in missing.items():
            try:
                await self._activate(shard, keys)
            except Exception as exc:
                failed[shard] = exc
        dirty: dict[int, dict[str, Entity]] = {}
        replies: list[tuple[int, Mapping[str, str], Any, BaseException | None]] = []
        positions = self.positions
        now = time.monotonic()
        for queued, key, shard in accepted:
            if shard in failed:
                continue
            entity = self.active.get(key)
            if entity is None:  # passivated meanwhile: its shard moved away
                failed[shard] = ShardMoved(f"{settings.kind} shard {shard} moved away")
                continue
            entity.touched = now
            entry_id = queued.headers[ENTRY_ID]
            if positions.seen(entity, shard, entry_id):
                settings.shard_stats(shard).skipped += 1
                continue
            try:
                outcome = await self._apply(entity, queued)
            except Exception as exc:  # the dead-letter publish failed
                failed[shard] = exc
                continue
            positions.applied(entity, shard, entry_id)
            if REPLY_TO in queued.headers:
                replies.append((shard, queued.headers, *outcome))
            dirty.setdefault(shard, {})[key] = entity
        for shard, entities in dirty.items():
            if shard not in failed:
                try:
                    await self._save(shard, entities)
                except Exception as exc:
                    failed[shard] = exc
        for shard in dirty:
            positions.settled(shard, shard not in failed)
        for shard, error in failed.items():
            for key in dirty.get(shard, {}):
                self._drop(key)  # ahead of the store: reloaded when next needed
            logger.warning("entity host %s: shard %d failed: %r", self.name, shard, error)
            self.access.save_failed(shard, error)
        for queued, _key, shard in accepted:
            cause = failed.get(shard)
            if cause is None:
                queued.resolve()
            else:
                queued.reject(cause)
        for shard, headers, result, raised in replies:
            if shard not in failed:  # else redelivered: the next attempt replies
                send_reply(self.system, settings.broker, headers, result, raised)
        self._bound()

    async def _activate(self, shard: int, keys: list[str]) -> None:
        settings = self.settings
        stats = settings.shard_stats(shard)
        await self.positions.load(shard)
        saved = await settings.store.load(settings.kind, shard, keys)
        if not self.access.owns(shard):
            # revoked while loading (a rebalance whose drain gave up waiting): keeping these
            # entities would let a later return of the shard use states from before the
            # other owner's saves
            raise ShardMoved(f"{settings.kind} shard {shard} moved away while activating")
        for key in keys:
            entity = settings.factory(key)
            record = saved.get(key)
            if record is None:
                entity.state = entity.initial_state()
                entity.saved = json.dumps(entity.state)
            else:
                entity.state = json.loads(record.state)
                entity.saved = record.state
                entity.position = position_key(record.position)
            self.active[key] = entity
            self._shard_of_key[key] = shard
            stats.activations += 1
            stats.active += 1
            hook = entity.on_activate()
            if inspect.isawaitable(hook):
                await hook

    async def _apply(
        self, entity: Entity, queued: Queued
    ) -> tuple[Any, BaseException | None]:
        """Apply one message, retried in place; dead-lettered after ``max_attempts``.
        The handler's result, or the error it was dead-lettered with."""
        settings = self.settings
        entity.headers = queued.headers
        for attempt in range(1, settings.max_attempts + 1):
            try:
                result = entity.handle(queued.message)
                if inspect.isawaitable(result):
                    result = await result
                entity.saved = json.dumps(entity.state)
                return result, None
            except Exception as exc:
                entity.state = json.loads(entity.saved)  # as before this message
                if attempt == settings.max_attempts:
                    await self._dead_letter(entity, queued, exc, attempt)
                    return None, exc
                await self.system.clock.sleep(settings.retry.delay(attempt - 1))
        raise AssertionError("unreachable: the last attempt returns")

    async def _dead_letter(
        self, entity: Entity, queued: Queued, exc: BaseException, attempts: int
    ) -> None:
        settings = self.settings
        reason = f"{settings.kind} {entity.key}: failed {attempts} attempts; last: {exc!r}"
        headers = {**queued.headers, ERROR_REASON: reason}
        stream = queued.headers.get(STREAM, settings.kind)
        broker = settings.broker
        message = broker.message(queued.message, key=entity.key, headers=headers)
        await broker.publish_messages(broker.dlq(stream), [message])
        logger.warning("entity %s dead-lettered entry %s: %s", entity.key,
                       queued.headers.get(ENTRY_ID), reason)

    async def _save(self, shard: int, entities: Mapping[str, Entity]) -> None:
        settings = self.settings
        records = {
            key: Saved(e.saved, ".".join(map(str, e.position))) for key, e in entities.items()
        }
        records.update(self.positions.records(shard))
        began = time.perf_counter()
        await settings.store.save(settings.kind, shard, records, self.access.fence(shard))
        stats = settings.shard_stats(shard)
        stats.saves += 1
        stats.saved += len(entities)
        stats.save_seconds += time.perf_counter() - began

    # -- memory ----------------------------------------------------------------------------

    def _bound(self) -> None:
        active, limit = self.active, self.settings.max_active
        while len(active) > limit:
            key = next(iter(active))
            self._evict(key)

    def _evict(self, key: str) -> None:
        entity = self.active.get(key)
        if entity is None:
            return
        self._drop(key)
        hook = entity.on_passivate()
        if inspect.isawaitable(hook):  # an async hook runs as a task: eviction is sync
            asyncio.ensure_future(hook)

    async def _passivate(self, key: str) -> None:
        entity = self.active.get(key)
        if entity is None:
            return
        self._drop(key)
        hook = entity.on_passivate()
        if inspect.isawaitable(hook):
            await hook

    def _drop(self, key: str) -> None:
        if self.active.pop(key, None) is None:
            return
        shard = self._shard_of_key.pop(key)
        stats = self.settings.shard_stats(shard)
        stats.active -= 1
        stats.passivations += 1

    async def _sweep(self) -> None:
        cutoff = time.monotonic() - self.settings.passivate_after
        idle = [k for k, e in self.active.items() if e.touched <= cutoff]
        for key in idle:
            await self._passivate(key)

    async def passivate_shards(self, shards: Sequence[int]) -> None:
        """Passivate every entity of ``shards`` (they moved away); states are saved."""
        gone = set(shards)
        for key in [k for k, s in self._shard_of_key.items() if s in gone]:
            await self._passivate(key)


__all__ = ["EntityHost", "EntitySettings", "ShardAccess", "ShardMoved"]
