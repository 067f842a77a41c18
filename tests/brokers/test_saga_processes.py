"""Several orchestrator processes on one Redis saga log, killed with kill -9.

- Two and three processes share the sagas; one is killed at a random point;
  a step fails its first calls. Every saga ends once (completed, as one
  orchestrator alone would end it), exactly one outcome per saga reaches the
  listener after dedupe by saga id, no record's version or fence ever goes
  back (sampled while they run), and no effect is applied and then undone.
- A process killed between the final log write and the listener's handling:
  the outcome still reaches the listener, from the process that takes over.

``SAGAS`` is modest in CI; ``TROUPE_HYPOTHESIS_PROFILE=deep`` raises it to the
issue's 300.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from troupe.actors.saga_log import SagaRecord, SagaStatus
from troupe.actors.saga_log_redis import RedisSagaLog

pytestmark = pytest.mark.broker

WORKER = Path(__file__).with_name("saga_worker.py")
SAGAS = 300 if os.environ.get("TROUPE_HYPOTHESIS_PROFILE") == "deep" else 40
LEASE = 1.0


def start_worker(url: str, sagas: int, listener: str = "ok") -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(sagas), str(LEASE), listener],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


class Watcher:
    """Samples every record while the processes run: versions and fences never go back."""

    def __init__(self, log: RedisSagaLog) -> None:
        self.log = log
        self.versions: dict[str, tuple[int, int]] = {}
        self.samples = 0

    async def sample(self) -> list[SagaRecord]:
        records = [r for r in await self._all() if r is not None]
        for record in records:
            before = self.versions.get(record.saga_id, (0, 0))
            assert record.version >= before[0], f"version of {record.saga_id} went back"
            assert record.fence >= before[1], f"fence of {record.saga_id} went back"
            self.versions[record.saga_id] = (record.version, record.fence)
        self.samples += 1
        return records

    async def _all(self) -> list[SagaRecord | None]:
        return [await self.log.load("trip", f"s{n}") for n in range(SAGAS)]


async def run_until_settled(
    client: Redis, watcher: Watcher, sagas: int, timeout: float = 60.0
) -> list[SagaRecord]:
    deadline = time.monotonic() + timeout
    while True:
        records = await watcher.sample()
        if len(records) == sagas and all(
            r.status.finished and not r.outcome_pending for r in records
        ):
            return records
        assert time.monotonic() < deadline, (
            f"{sum(r.status.finished for r in records)} of {sagas} sagas finished"
        )
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("processes", "seed"), [(2, 1), (3, 2)])
async def test_orchestrator_processes_share_sagas_and_survive_kill_9(
    redis_url: str, processes: int, seed: int
) -> None:
    rng = random.Random(seed)
    client = Redis.from_url(redis_url)
    watcher = Watcher(RedisSagaLog(client))
    workers = [start_worker(redis_url, SAGAS) for _ in range(processes)]
    try:
        deadline = time.monotonic() + 30
        while not await client.exists("troupe:saga:trip:s0"):  # some process is running
            assert time.monotonic() < deadline, "no worker started a saga"
            await asyncio.sleep(0.01)
        # kill one at a random point of the run, one that owns a saga in flight (its
        # sagas are taken over after its lease)
        point = rng.randrange(SAGAS // 2)
        while True:
            records = await watcher.sample()
            running = [r for r in records if not r.status.finished or r.outcome_pending]
            if sum(r.status.finished for r in records) >= point and running:
                break
        pid = int(rng.choice(running).owner.split(":")[1])
        victim = next(w for w in workers if w.pid == pid)
        kill(victim)
        records = await run_until_settled(client, watcher, SAGAS)
    finally:
        for worker in workers:
            kill(worker)
    try:
        assert {r.status for r in records} == {SagaStatus.COMPLETED}
        outcomes = [o.decode() for o in await client.lrange("outcomes", 0, -1)]
        by_saga: dict[str, set[str]] = {}
        for outcome in outcomes:
            saga_id, status = outcome.split(":")
            by_saga.setdefault(saga_id, set()).add(status)
        assert by_saga == {f"s{n}": {"completed"} for n in range(SAGAS)}  # one each, deduped
        events = [e.decode() for e in await client.lrange("events", 0, -1)]
        assert not [e for e in events if e.startswith("undo")]  # nothing applied then undone
        assert Counter(events) == Counter(
            f"do s{n} {step}" for n in range(SAGAS) for step in ("reserve", "charge", "ship")
        )
        assert watcher.samples > 10
        assert sum(r.fence > 1 for r in records) >= 1  # the victim's sagas were taken over
    finally:
        await client.aclose()


async def test_outcome_survives_a_kill_between_the_final_write_and_the_listener(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    log = RedisSagaLog(client)
    first = start_worker(redis_url, 1, listener="hang")  # its listener never acknowledges
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            record = await log.load("trip", "s0")
            if record is not None and record.status.finished:
                break
            assert time.monotonic() < deadline, record
            await asyncio.sleep(0.01)
        # the final state and the pending outcome were written in one step
        assert record.status is SagaStatus.COMPLETED and record.outcome_pending
        kill(first)  # dies while its listener handles the outcome
        assert await client.llen("outcomes") == 0
        killed_at = time.monotonic()
        second = start_worker(redis_url, 1)
        while not await client.llen("outcomes"):
            assert time.monotonic() < killed_at + 30, "the outcome was never re-sent"
            await asyncio.sleep(0.01)
        assert [o.decode() for o in await client.lrange("outcomes", 0, -1)] == ["s0:completed"]
        deadline = time.monotonic() + 10
        while (stored := await log.load("trip", "s0")) is not None and stored.outcome_pending:
            assert time.monotonic() < deadline, "the outcome was never acknowledged"
            await asyncio.sleep(0.01)
        assert stored is not None and stored.fence == 2  # taken over from the dead owner
        events = [e.decode() for e in await client.lrange("events", 0, -1)]
        assert events == ["do s0 reserve", "do s0 charge", "do s0 ship"]  # nothing ran again
    finally:
        kill(first)
        if second is not None:
            kill(second)
        await client.aclose()
