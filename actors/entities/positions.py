"""How a host recognises a redelivered message: by its position, or by its id.

- :class:`SourcePositions` (Redis, Kafka, memory): entry ids order like the source, so
  an entity's record keeps the position of its last applied message and a message at
  or before it is a redelivery.
- :class:`MessageWindow` (RabbitMQ): a queue's deliveries carry message ids only. The
  ids of the last ``size`` messages applied on a shard are saved with the shard's
  entity records, in the same (fenced) write, as one more record of that shard
  (:func:`window_key`); a message whose id is in the window is a redelivery. What
  RabbitMQ can deliver again is what the shard's consumer held unacked: at most its
  prefetch, the last messages delivered, so a window of at least the prefetch sees
  every redelivery (the placement sets ``size`` to twice the prefetch).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Protocol

from troupe.brokers.state import Saved, StateStore, position_key
from troupe.errors import require_at_least

from .entity import Entity


class Positions(Protocol):
    """What an :class:`~troupe.actors.entities.EntityHost` asks about redeliveries."""

    async def load(self, shard: int) -> None:
        """Before the first message of ``shard`` in this host: read what was saved."""
        ...

    def seen(self, entity: Entity, shard: int, entry_id: str) -> bool:
        """True when the message ``entry_id`` was applied to ``entity`` already."""
        ...

    def applied(self, entity: Entity, shard: int, entry_id: str) -> None:
        """``entry_id`` was applied to ``entity`` (saved with the next save of ``shard``)."""
        ...

    def records(self, shard: int) -> dict[str, Saved]:
        """Records to write with the next save of ``shard`` (besides its entities)."""
        ...

    def settled(self, shard: int, saved: bool) -> None:
        """The save of ``shard`` succeeded (``saved``), or its batch was given up."""
        ...


class SourcePositions:
    """Entry ids that order like the source: the entity keeps the last one applied."""

    async def load(self, shard: int) -> None:
        return None

    def seen(self, entity: Entity, shard: int, entry_id: str) -> bool:
        return position_key(entry_id) <= entity.position

    def applied(self, entity: Entity, shard: int, entry_id: str) -> None:
        entity.position = position_key(entry_id)

    def records(self, shard: int) -> dict[str, Saved]:
        return {}

    def settled(self, shard: int, saved: bool) -> None:
        return None


def window_key(shard: int) -> str:
    """The record key of ``shard``'s window (no user key starts with a NUL)."""
    return f"\x00applied.{shard}"


class MessageWindow:
    """The ids of the last ``size`` messages applied per shard, saved with the states."""

    def __init__(self, store: StateStore, kind: str, size: int) -> None:
        require_at_least("dedupe window", size, 1)
        self.store = store
        self.kind = kind
        self.size = size
        self._ids: dict[int, OrderedDict[str, None]] = {}  # saved, oldest first
        self._staged: dict[int, OrderedDict[str, None]] = {}  # applied, not saved yet

    async def load(self, shard: int) -> None:
        if shard in self._ids:
            return
        key = window_key(shard)
        found = (await self.store.load(self.kind, shard, [key])).get(key)
        ids = json.loads(found.state) if found is not None else []
        self._ids[shard] = OrderedDict.fromkeys(ids)

    def seen(self, entity: Entity, shard: int, entry_id: str) -> bool:
        staged = self._staged.get(shard)
        return entry_id in self._ids.get(shard, ()) or (staged is not None and entry_id in staged)

    def applied(self, entity: Entity, shard: int, entry_id: str) -> None:
        self._staged.setdefault(shard, OrderedDict())[entry_id] = None

    def _next(self, shard: int) -> list[str]:
        ids = [*self._ids.get(shard, ()), *self._staged.get(shard, ())]
        return ids[-self.size :]

    def records(self, shard: int) -> dict[str, Saved]:
        if not self._staged.get(shard):
            return {}
        return {window_key(shard): Saved(json.dumps(self._next(shard)), "")}

    def settled(self, shard: int, saved: bool) -> None:
        if saved and self._staged.get(shard):
            self._ids[shard] = OrderedDict.fromkeys(self._next(shard))
        self._staged.pop(shard, None)


__all__ = ["MessageWindow", "Positions", "SourcePositions", "window_key"]
