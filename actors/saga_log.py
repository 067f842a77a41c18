"""The saga log: versioned saga records, fenced by an owner lease, with an outcome outbox.

A :class:`SagaRecord` is plain JSON, so any store can hold it. The orchestrator
writes it before a step's action is sent, after the step's reply, and after
each compensation; orchestrators read unfinished records back and resume them.

Ownership, so several orchestrators can share one log:

- every record names its ``owner`` (an orchestrator id) and a ``fence`` (the
  fencing token, raised by one on every change of owner);
- an owner keeps a lease (``renew(owner, lease)``, every few seconds while it
  runs); ``take_over`` moves a record to a new owner only when its owner's
  lease is not live (or the saga is finished and nothing is left to deliver);
- ``save`` is a compare-and-set: it writes only when the stored record still
  has the caller's ``version - 1``, owner and fence, else it raises
  :class:`SagaFenced` and writes nothing. Versions therefore never decrease and
  a stale owner never overwrites the current one.

The outbox: a record whose ``outcome_pending`` is true is finished, but its
listener has not acknowledged the outcome yet; ``outbox(saga)`` lists them so
they are delivered again after a crash.

:class:`MemorySagaLog` is the embedded default; ``troupe.actors.saga_log_redis.
RedisSagaLog`` keeps the log in Redis, with the same semantics.

>>> import asyncio
>>> log = MemorySagaLog()
>>> async def demo():
...     await log.renew("A", lease=10)
...     record = SagaRecord("s1", "trip", owner="A", fence=1)
...     await log.create(record)
...     stale = SagaRecord.from_json(record.to_json())
...     record.step, record.version = 1, record.version + 1
...     await log.save(record)
...     stale.version += 1                      # a stale copy: refused, nothing written
...     try:
...         await log.save(stale)
...     except SagaFenced:
...         pass
...     return (await log.load("trip", "s1")).step
>>> asyncio.run(demo())
1
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from troupe.errors import TroupeError

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


class SagaFenced(TroupeError):
    """A saga-log write was refused: the record changed owner or version since it was read.

    The writer is a stale owner (its lease ran out and another orchestrator
    took the saga over, or another run moved it on): it must stop driving it.
    """

    def __init__(self, saga: str, saga_id: str, owner: str, version: int) -> None:
        self.saga = saga
        self.saga_id = saga_id
        self.owner = owner
        self.version = version
        super().__init__(
            f"write of saga {saga}/{saga_id} (version {version}) by owner {owner!r} refused: "
            "the record has another owner or version now"
        )


@dataclass
class SagaRecord:
    """The persisted state of one saga run.

    ``step`` is the index of the next forward step; ``step_started`` says its
    action was sent and no reply was recorded (outcome unknown).
    ``to_compensate`` lists the steps still to undo, in the order to undo them.
    ``attempts``/``timeouts`` count the tries (and the timed-out ones) of the
    current action or compensation; ``cause`` says why a failed saga gave up
    (``rejected``, ``failures``, ``timeouts`` or ``failures and timeouts``).
    ``version`` rises by one on every write; ``owner``/``fence`` are the
    orchestrator driving it and its fencing token; ``outcome_pending`` is the
    outbox flag (finished, listener not acknowledged yet).
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
    owner: str = ""
    fence: int = 0
    outcome_pending: bool = False
    timeouts: int = 0
    cause: str | None = None

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
                "owner": self.owner,
                "fence": self.fence,
                "outcome_pending": self.outcome_pending,
                "timeouts": self.timeouts,
                "cause": self.cause,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> SagaRecord:
        """Read a record written by :meth:`to_json` (older records lack the newer fields)."""
        fields = json.loads(text)
        fields["status"] = SagaStatus(fields["status"])
        return cls(**fields)

    def copy(self) -> SagaRecord:
        """An independent copy."""
        return SagaRecord.from_json(self.to_json())

    @property
    def up_for_grabs(self) -> bool:
        """True when no owner needs to hold it: finished with nothing left to deliver."""
        return self.status.finished and not self.outcome_pending


_dumps = json.JSONEncoder(separators=(",", ":")).encode


class SagaLog(Protocol):
    """Durable, fenced saga records. Implementations copy: callers may mutate what they pass."""

    async def create(self, record: SagaRecord) -> bool:
        """Store a new record; False (and nothing written) when the saga id exists."""
        ...

    async def save(self, record: SagaRecord) -> None:
        """Compare-and-set: write ``record`` if the stored one has ``record.version - 1``
        and the same owner and fence (the caller bumps ``version``); else raise
        :class:`SagaFenced` and write nothing."""
        ...

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        """The record of ``saga_id``, or None."""
        ...

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        """Every record of saga type ``saga`` whose status is one of ``statuses``."""
        ...

    async def outbox(self, saga: str) -> list[SagaRecord]:
        """Every finished record of ``saga`` whose outcome is not acknowledged yet."""
        ...

    async def take_over(self, record: SagaRecord, owner: str) -> SagaRecord | None:
        """Make ``owner`` the owner of the saga read as ``record``, raising its fence and
        version by one, and return the new record. Refused (None) when the stored record
        changed since (another version) or its owner is another orchestrator whose lease
        is live (unless the saga is finished with nothing to deliver)."""
        ...

    async def renew(self, owner: str, lease: float) -> None:
        """Keep ``owner``'s lease live for ``lease`` more seconds."""
        ...

    async def release(self, owner: str) -> None:
        """End ``owner``'s lease now (a clean shutdown hands its sagas over at once)."""
        ...

    async def live(self, owners: Collection[str]) -> set[str]:
        """Those of ``owners`` whose lease is live."""
        ...


class MemorySagaLog:
    """A SagaLog in this process's memory (survives actor restarts, not process death).

    ``clock`` (seconds, monotonic) times the owner leases; tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], str] = {}
        self._meta: dict[tuple[str, str], tuple[int, str, int]] = {}  # version, owner, fence
        self._status: dict[tuple[str, str], SagaStatus] = {}
        self._outbox: set[tuple[str, str]] = set()
        self._leases: dict[str, float] = {}
        self.writes = 0

    async def create(self, record: SagaRecord) -> bool:
        key = (record.saga, record.saga_id)
        if key in self._records:
            return False
        self._write(key, record)
        return True

    async def save(self, record: SagaRecord) -> None:
        key = (record.saga, record.saga_id)
        if self._meta.get(key) != (record.version - 1, record.owner, record.fence):
            raise SagaFenced(record.saga, record.saga_id, record.owner, record.version)
        self._write(key, record)

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

    async def outbox(self, saga: str) -> list[SagaRecord]:
        return [SagaRecord.from_json(self._records[key]) for key in self._outbox if key[0] == saga]

    async def take_over(self, record: SagaRecord, owner: str) -> SagaRecord | None:
        key = (record.saga, record.saga_id)
        meta = self._meta.get(key)
        if meta is None or meta[0] != record.version:
            return None
        current = SagaRecord.from_json(self._records[key])
        if current.owner != owner and self._is_live(current.owner) and not current.up_for_grabs:
            return None
        current.owner = owner
        current.fence += 1
        current.version += 1
        self._write(key, current)
        return current

    async def renew(self, owner: str, lease: float) -> None:
        self._leases[owner] = self._clock() + lease

    async def release(self, owner: str) -> None:
        self._leases.pop(owner, None)

    async def live(self, owners: Collection[str]) -> set[str]:
        return {owner for owner in owners if self._is_live(owner)}

    def _is_live(self, owner: str) -> bool:
        expires = self._leases.get(owner)
        return expires is not None and expires > self._clock()

    def _write(self, key: tuple[str, str], record: SagaRecord) -> None:
        self._records[key] = record.to_json()
        self._meta[key] = (record.version, record.owner, record.fence)
        self._status[key] = record.status
        if record.outcome_pending:
            self._outbox.add(key)
        else:
            self._outbox.discard(key)
        self.writes += 1

    def __len__(self) -> int:
        return len(self._records)
