"""The saga log: where a saga's progress is written before and after every step.

A :class:`SagaRecord` is plain JSON, so any store can hold it. The orchestrator
writes it before a step's action is sent, after the step's reply, and after
each compensation; a restarted orchestrator reads the unfinished records back
and resumes them. :class:`MemorySagaLog` is the embedded default;
``troupe.actors.saga_log_redis.RedisSagaLog`` keeps the log in Redis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class SagaStatus(StrEnum):
    """Where a saga is."""

    RUNNING = "running"  # actions going forward
    COMPENSATING = "compensating"  # a step failed; undoing the done steps in reverse
    COMPLETED = "completed"  # every action succeeded
    COMPENSATED = "compensated"  # every compensation succeeded
    NEEDS_ATTENTION = "needs_attention"  # a compensation kept failing; parked for a human

    @property
    def finished(self) -> bool:
        """True for the states a saga does not leave by itself."""
        return self in (
            SagaStatus.COMPLETED,
            SagaStatus.COMPENSATED,
            SagaStatus.NEEDS_ATTENTION,
        )


UNFINISHED = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


@dataclass
class SagaRecord:
    """The persisted state of one saga run.

    ``step`` is the index of the next forward step; ``step_started`` says its
    action was sent and no reply was recorded (outcome unknown).
    ``to_compensate`` lists the steps still to undo, in the order to undo them.
    """

    saga_id: str
    saga: str
    data: dict[str, Any] = field(default_factory=dict)
    status: SagaStatus = SagaStatus.RUNNING
    step: int = 0
    step_started: bool = False
    done: list[str] = field(default_factory=list)
    to_compensate: list[str] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    attempts: int = 0
    failed_step: str | None = None
    error: str | None = None
    version: int = 0

    def to_json(self) -> str:
        """The record as a JSON document."""
        # by hand: dataclasses.asdict deep-copies everything and dominated the saga's cost
        return _dumps(
            {
                "saga_id": self.saga_id,
                "saga": self.saga,
                "data": self.data,
                "status": self.status.value,
                "step": self.step,
                "step_started": self.step_started,
                "done": self.done,
                "to_compensate": self.to_compensate,
                "compensated": self.compensated,
                "attempts": self.attempts,
                "failed_step": self.failed_step,
                "error": self.error,
                "version": self.version,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SagaRecord:
        """Read a record written by :meth:`to_json`."""
        fields = json.loads(text)
        fields["status"] = SagaStatus(fields["status"])
        return cls(**fields)


_dumps = json.JSONEncoder(separators=(",", ":")).encode


class SagaLog(Protocol):
    """Durable saga records. Implementations copy: callers may mutate what they pass."""

    async def create(self, record: SagaRecord) -> bool:
        """Store a new record; False (and nothing written) when the saga id exists."""
        ...

    async def save(self, record: SagaRecord) -> None:
        """Overwrite the record (its ``version`` is bumped by the caller)."""
        ...

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        """The record of ``saga_id``, or None."""
        ...

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        """Every record of saga type ``saga`` whose status is one of ``statuses``."""
        ...


class MemorySagaLog:
    """A SagaLog in this process's memory (survives actor restarts, not process death)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], str] = {}
        self._status: dict[tuple[str, str], SagaStatus] = {}
        self.writes = 0

    async def create(self, record: SagaRecord) -> bool:
        key = (record.saga, record.saga_id)
        if key in self._records:
            return False
        self._write(key, record)
        return True

    async def save(self, record: SagaRecord) -> None:
        self._write((record.saga, record.saga_id), record)

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        text = self._records.get((saga, saga_id))
        return None if text is None else SagaRecord.from_json(text)

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        wanted = set(statuses)
        return [
            SagaRecord.from_json(self._records[key])
            for key, status in self._status.items()
            if key[0] == saga and status in wanted
        ]

    def _write(self, key: tuple[str, str], record: SagaRecord) -> None:
        self._records[key] = record.to_json()
        self._status[key] = record.status
        self.writes += 1

    def __len__(self) -> int:
        return len(self._records)
