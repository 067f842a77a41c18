"""Saga invariants for tests built with :mod:`troupe.testing`.

>>> import asyncio
>>> from troupe.actors.saga_log import MemorySagaLog
>>> asyncio.run(sagas_settled(MemorySagaLog(), "order", []))
{}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .saga_log import SagaLog, SagaStatus

logger = logging.getLogger(__name__)

SETTLED = (SagaStatus.COMPLETED, SagaStatus.COMPENSATED)


async def sagas_settled(
    log: SagaLog,
    saga: str,
    ids: Iterable[str],
    *,
    allowed: Iterable[SagaStatus] = SETTLED,
) -> dict[str, SagaStatus]:
    """Every saga ``ids`` of type ``saga`` exists in ``log`` and was completed or
    compensated (or is in another of ``allowed``); returns each one's status.
    Raises AssertionError naming the sagas that are missing or unsettled."""
    accepted = set(allowed)
    found: dict[str, SagaStatus] = {}
    bad: list[str] = []
    for saga_id in ids:
        record = await log.load(saga, saga_id)
        if record is None:
            bad.append(f"{saga_id}: no saga")
            continue
        found[saga_id] = record.status
        if record.status not in accepted:
            bad.append(f"{saga_id}: {record.status.value}")
    if bad:
        raise AssertionError(f"{len(bad)} saga(s) not settled: " + ", ".join(bad[:10]))
    return found


__all__ = ["SETTLED", "sagas_settled"]
