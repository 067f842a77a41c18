"""Task counters in the runtime's metric slots: ``troupe_tasks_total{task,queue,outcome}``.

Workers bump plain integers (one slot per task type, queue and outcome, with
the handler seconds summed beside the count); nothing from prometheus-client
runs per task. Labels stay bounded: task types come from the registry (a
message for an unknown type counts as ``_unknown``), queues from the pool's
configuration, outcomes from :data:`OUTCOMES`; task ids never become labels.

>>> stats = TaskStats(None)
>>> stats.count("send_email", "critical", "done", 0.002)
>>> stats.total("send_email", "critical", "done")
1
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from troupe.metrics import LABEL_CHARS

if TYPE_CHECKING:
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)

#: done: succeeded; overran: a sync handler succeeded past its time limit (reported, not
#: interrupted); retried: failed, enqueued again with backoff; dead: failed for good, in the
#: dead-letter queue; cancelled: cancelled by id before or while running.
OUTCOMES = ("done", "overran", "retried", "dead", "cancelled")
UNKNOWN = "_unknown"
COUNT = 0
SUM_NS = 1


class TaskStats:
    """Counts per (task, queue, outcome) in ``system``'s metric store (or in memory)."""

    def __init__(self, system: ActorSystem | None) -> None:
        self._metrics = system.metrics if system is not None else None
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], memoryview] = {}

    @property
    def exported(self) -> bool:
        """True when the counts go to an ActorSystem's metrics."""
        return self._metrics is not None

    def _row(self, task: str, queue: str, outcome: str) -> memoryview:
        key = (task[:LABEL_CHARS], queue[:LABEL_CHARS], outcome)
        row = self._rows.get(key)
        if row is None:
            slot = self._metrics.store.slot(("task", *key)) if self._metrics is not None else None
            row = slot.values if slot is not None else memoryview(bytearray(16)).cast("Q")
            self._rows[key] = row
        return row

    def count(self, task: str, queue: str, outcome: str, seconds: float) -> None:
        """Count one finished attempt of ``task`` from ``queue``."""
        with self._lock:
            row = self._row(task, queue, outcome)
            row[COUNT] += 1
            row[SUM_NS] += int(seconds * 1e9)

    def total(self, task: str, queue: str, outcome: str) -> int:
        """Attempts counted so far with these labels."""
        with self._lock:
            return int(self._row(task, queue, outcome)[COUNT])

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        """Every non-zero count by (task, queue, outcome)."""
        with self._lock:
            return {k: int(v[COUNT]) for k, v in self._rows.items() if v[COUNT]}
