"""Saga log ownership under interleavings: leases, fencing, crashes, concurrent owners.

A hypothesis state machine drives several orchestrator "owners" against one
saga log (memory here; a shorter run on Redis in tests/brokers). Owners
create sagas, save progress, finish them with an outcome in the outbox,
acknowledge outcomes, read records and take them over later (with possibly
stale reads), crash (losing everything they held, coming back under a new id),
and their leases expire. A model of the log says which writes must succeed;
the invariants: every write the model refuses is refused with ``SagaFenced``
(a stale owner never overwrites), versions and fences never decrease, and
a live owner's saga is never taken from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from troupe.actors.saga_log import MemorySagaLog, SagaFenced, SagaLog, SagaRecord, SagaStatus

T = TypeVar("T")
OWNERS = ["A", "B", "C"]
SAGAS = ["s0", "s1"]
LEASE = 10.0


@dataclass
class Truth:
    """What the model says the stored record is."""

    version: int
    owner: str
    fence: int
    status: SagaStatus
    outcome_pending: bool


class SagaLogMachine(RuleBasedStateMachine):
    """Owners racing over one saga log; subclasses supply the log and the clock."""

    lease = LEASE

    def __init__(self, log: SagaLog, now: Callable[[], float], close: Callable[[], Any]) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.log = log
        self.now = now
        self._close = close
        self.incarnation = dict.fromkeys(OWNERS, 0)
        self.lease_until: dict[str, float] = {}  # owner id -> model expiry
        self.held: dict[str, dict[str, SagaRecord]] = {o: {} for o in OWNERS}  # runs
        self.reads: dict[tuple[str, str], SagaRecord] = {}  # (owner, saga) -> last read
        self.truth: dict[str, Truth] = {}
        self.seen_version: dict[str, int] = {}
        self.seen_fence: dict[str, int] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self._close_async())
        self.loop.close()

    async def _close_async(self) -> None:
        result = self._close()
        if asyncio.iscoroutine(result):
            await result

    def oid(self, owner: str) -> str:
        return f"{owner}#{self.incarnation[owner]}"

    def live(self, owner_id: str) -> bool:
        return self.lease_until.get(owner_id, float("-inf")) > self.now()

    # -- owners ---------------------------------------------------------------------------

    @initialize()
    def owners_start(self) -> None:
        for owner in OWNERS:
            self.renew(owner)

    @rule(owner=st.sampled_from(OWNERS))
    def renew(self, owner: str) -> None:
        oid = self.oid(owner)
        self.run(self.log.renew(oid, self.lease))
        self.lease_until[oid] = self.now() + self.lease

    @rule(owner=st.sampled_from(OWNERS))
    def lease_expires(self, owner: str) -> None:
        """The owner stopped renewing long enough (or released its lease on shutdown)."""
        oid = self.oid(owner)
        self.run(self.log.release(oid))
        self.lease_until.pop(oid, None)

    @rule(owner=st.sampled_from(OWNERS))
    def crash(self, owner: str) -> None:
        """kill -9: the owner's runs and reads are gone; it comes back under a new id,
        while its old lease lives on in the log until it expires."""
        self.held[owner].clear()
        for key in [k for k in self.reads if k[0] == owner]:
            del self.reads[key]
        self.incarnation[owner] += 1

    @rule(owner=st.sampled_from(OWNERS), saga=st.sampled_from(SAGAS))
    def create(self, owner: str, saga: str) -> None:
        self.renew(owner)  # an orchestrator renews its lease on start, before any write
        record = SagaRecord(saga, "trip", {"n": 0}, owner=self.oid(owner), fence=1)
        created = self.run(self.log.create(record))
        assert created == (saga not in self.truth)
        if created:
            self.truth[saga] = Truth(0, record.owner, 1, SagaStatus.RUNNING, False)
            self.held[owner][saga] = record

    @rule(
        owner=st.sampled_from(OWNERS),
        saga=st.sampled_from(SAGAS),
        change=st.sampled_from(["step", "complete", "compensate", "ack"]),
    )
    def save(self, owner: str, saga: str, change: str) -> None:
        record = self.held[owner].get(saga)
        if record is None:
            return
        record = record.copy()
        if change == "step":
            record.step += 1
            record.data["n"] = record.step
        elif change == "complete":
            record.status = SagaStatus.COMPLETED
            record.outcome_pending = True
        elif change == "compensate":
            record.status = SagaStatus.COMPENSATING
        else:
            record.outcome_pending = False
        record.version += 1
        truth = self.truth[saga]
        expected = (truth.version, truth.owner, truth.fence) == (
            record.version - 1,
            record.owner,
            record.fence,
        )
        try:
            self.run(self.log.save(record))
        except SagaFenced:
            assert not expected, "a write by the current owner was refused"
            del self.held[owner][saga]  # a refused write stops that owner's run
            return
        assert expected, f"a stale owner overwrote {saga}: {record} over {truth}"
        self.held[owner][saga] = record
        self.truth[saga] = Truth(
            record.version, record.owner, record.fence, record.status, record.outcome_pending
        )

    @rule(owner=st.sampled_from(OWNERS), saga=st.sampled_from(SAGAS))
    def read(self, owner: str, saga: str) -> None:
        record = self.run(self.log.load("trip", saga))
        if record is not None:
            self.reads[(owner, saga)] = record

    @rule(owner=st.sampled_from(OWNERS), saga=st.sampled_from(SAGAS), fresh=st.booleans())
    def take_over(self, owner: str, saga: str, fresh: bool) -> None:
        """Take over a saga as just read, or as last read (possibly long ago: stale)."""
        if fresh:
            self.read(owner, saga)
        read = self.reads.get((owner, saga))
        if read is None:
            return
        truth = self.truth[saga]
        oid = self.oid(owner)
        idle = truth.status.finished and not truth.outcome_pending
        allowed = truth.version == read.version and (
            truth.owner == oid or not self.live(truth.owner) or idle
        )
        taken = self.run(self.log.take_over(read, oid))
        assert (taken is not None) == allowed, (read, truth, oid, self.live(truth.owner))
        if taken is None:
            return
        assert taken.owner == oid and taken.fence == truth.fence + 1
        assert taken.version == truth.version + 1
        self.truth[saga] = Truth(
            taken.version, oid, taken.fence, taken.status, taken.outcome_pending
        )
        self.held[owner][saga] = taken

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def the_log_matches_the_model_and_never_goes_back(self) -> None:
        for saga, truth in self.truth.items():
            stored = self.run(self.log.load("trip", saga))
            assert stored is not None
            assert (stored.version, stored.owner, stored.fence) == (
                truth.version,
                truth.owner,
                truth.fence,
            )
            assert stored.version >= self.seen_version.get(saga, 0)
            assert stored.fence >= self.seen_fence.get(saga, 0)
            self.seen_version[saga] = stored.version
            self.seen_fence[saga] = stored.fence

    @invariant()
    def indexes_agree_with_the_records(self) -> None:
        unfinished = self.run(
            self.log.records("trip", [SagaStatus.RUNNING, SagaStatus.COMPENSATING])
        )
        outbox = self.run(self.log.outbox("trip"))
        assert {r.saga_id for r in unfinished} == {
            s for s, t in self.truth.items() if not t.status.finished
        }
        assert {r.saga_id for r in outbox} == {
            s for s, t in self.truth.items() if t.outcome_pending
        }


class MemorySagaLogMachine(SagaLogMachine):
    """The memory log on a fake clock: leases also run out as time passes."""

    def __init__(self) -> None:
        self.clock = [0.0]
        super().__init__(
            MemorySagaLog(clock=lambda: self.clock[0]), lambda: self.clock[0], _nothing
        )

    @rule(seconds=st.sampled_from([1.0, 4.0, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.clock[0] += seconds


def _nothing() -> None:
    return None


def test_memory_saga_log_state_machine() -> None:
    run_state_machine_as_test(MemorySagaLogMachine, settings=settings(stateful_step_count=40))


def test_the_saga_log_docstring_example_runs() -> None:
    import doctest

    import troupe.actors.saga_log

    result = doctest.testmod(troupe.actors.saga_log)
    assert result.failed == 0 and result.attempted > 0
