"""Plain counters of the entities of one shard; read by the metrics collector."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class EntityStats:
    """Counters of one shard's entities in this process (nothing per message but ints)."""

    active: int = 0  # in memory now
    activations: int = 0
    passivations: int = 0  # left memory (idle, evicted, shard moved, stop)
    skipped: int = 0  # redelivered messages at or before the saved position
    saves: int = 0  # store writes (one per shard per batch)
    saved: int = 0  # entity records written
    save_seconds: float = 0.0  # summed time of the saves


__all__ = ["EntityStats"]
