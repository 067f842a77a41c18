"""The attempt journal: starts survive the death of their process, live journals are left
alone, and each start is counted once in the broker's record however folding goes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

from troupe.brokers import connect
from troupe.brokers.attempts import (
    Journal,
    JournaledAttempts,
    Start,
    account,
    fold_dead_journals,
    read_journal,
)
from troupe.brokers.message import Message
from troupe.brokers.rabbitmq.session import AttemptsRecord
from troupe.brokers.session import Delivery


def test_journal_grows_and_keeps_only_unsettled_starts(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "c", slots=2)
    for i in range(5):  # past the initial two slots
        journal.add(f"1-{i}")
    journal.add("1-0")
    journal.remove("1-3")
    starts = {key: count for key, count, _ in read_journal(journal.path)}
    assert starts == {"1-0": 2, "1-1": 1, "1-2": 1, "1-4": 1}
    markers = {marker for _, _, marker in read_journal(journal.path)}
    assert len(markers) == 4 and all(m.startswith(journal.incarnation) for m in markers)
    journal.close()
    assert journal.path.exists()  # unsettled starts stay for a folder
    empty = Journal.create(tmp_path, "d")
    empty.close()
    assert not empty.path.exists()


def test_a_start_survives_os_exit_and_is_folded_once(tmp_path: Path) -> None:
    script = (
        "import os, sys; from pathlib import Path\n"
        "from troupe.brokers.attempts import Journal\n"
        "j = Journal.create(Path(sys.argv[1]), 'doomed')\n"
        "j.add('7-0'); os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert done.returncode == 9
    [path] = tmp_path.glob("*.journal")
    assert [(k, n) for k, n, _ in read_journal(path)] == [("7-0", 1)]
    live = Journal.create(tmp_path, "alive")
    live.add("8-0")
    folded: list[list[Start]] = []

    async def record(starts: list[Start], done: object) -> None:
        folded.append(list(starts))

    assert asyncio.run(fold_dead_journals(tmp_path, record, own=None)) == 1
    assert [[(k, n) for k, n, _ in s] for s in folded] == [[("7-0", 1)]]  # not the live one
    assert not path.exists() and live.path.exists()
    live.close()


async def test_each_start_counts_once_in_the_redis_record(redis_url: str, tmp_path: Path) -> None:
    """A failure recorded just before its consumer died (slot not yet cleared), then folded
    by two sessions one after the other: the record holds one attempt."""
    broker = connect(redis_url, journal_dir=tmp_path)
    client = aioredis.Redis.from_url(redis_url)
    try:
        first = await broker.consume("s", "g", "c1", window=10)
        await broker.publish("s", "x")
        [delivery] = await first.fetch(10, 0)
        log = first.attempts
        assert isinstance(log, JournaledAttempts)
        log.started(delivery)
        marker = log.journal.marker(delivery.entry_id)
        await log._record([(delivery.entry_id, 1, marker)], ())  # failed() up to the crash
        log.journal.close(keep=True)  # died before clearing the slot
        for name in ("c2", "c3"):
            later = await broker.consume("s", "g", name, window=10)
            later.attempts.close()
        assert await client.hget("s:attempts:g", delivery.entry_id) == b"1"
        again = await broker.consume("s", "g", "c1", window=10)
        [resumed] = await again.fetch(10, 0)
        assert resumed.attempts == 1
        await again.ack([resumed])
        again.attempts.close()
        assert await client.hlen("s:attempts:g") == 0  # cleaned with the ack
    finally:
        await client.aclose()
        await broker.close()


def test_a_delivery_knows_when_it_may_have_a_record() -> None:
    fresh = Delivery("s", "g", "1-0", None)
    assert not fresh.recorded
    assert Delivery("s", "g", "1-0", None, deliveries=2).recorded
    assert Delivery("s", "g", "1-0", None, attempts=1).recorded


async def test_each_dead_journal_folded_is_reported_once(tmp_path: Path) -> None:
    """A folder reports every dead journal it folds (by incarnation), even one with no
    start in it: its consumer died holding deliveries the broker gives back."""
    dead = Journal.create(tmp_path, "dead")
    idle = Journal.create(tmp_path, "idle")
    dead.add("1-0")
    dead.close()
    idle.close(keep=True)
    ended: list[str] = []

    async def record(found: Sequence[Start], done: object) -> None:
        return None

    async def end(incarnation: str) -> None:
        ended.append(incarnation)

    assert await fold_dead_journals(tmp_path, record, own=None, ended=end) == 1
    assert sorted(ended) == sorted([dead.incarnation, idle.incarnation])
    assert await fold_dead_journals(tmp_path, record, own=None, ended=end) == 0
    assert len(ended) == 2


async def test_a_folder_waits_for_the_one_folding(tmp_path: Path) -> None:
    """Two sessions of a host fold at once: the second waits until the first has written
    the dead journal's starts (and finds nothing left), so it reads a fresh record."""
    dead = Journal.create(tmp_path, "dead")
    dead.add("7-0")
    dead.close()
    written: list[str] = []
    release = asyncio.Event()

    async def slow(found: Sequence[Start], done: object) -> None:
        await release.wait()  # the first folder's record write is in flight
        written.extend(k for k, _, _ in found)

    async def fast(found: Sequence[Start], done: object) -> None:
        written.extend(k for k, _, _ in found)

    first = asyncio.ensure_future(fold_dead_journals(tmp_path, slow, own=None))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(fold_dead_journals(tmp_path, fast, own=None))
    await asyncio.sleep(0.1)
    assert not second.done()  # waits for the fold lock
    release.set()
    assert await first == 1
    assert await second == 0
    assert written == ["7-0"]


async def test_the_rabbitmq_record_accounts_for_deliveries_this_hosts_ends_explain(
    tmp_path: Path,
) -> None:
    """Each end of a session of this host (once per incarnation) explains at most one
    delivery of each message published before it; never more than the delivery's
    earlier deliveries."""
    record = AttemptsRecord(tmp_path / "attempts.sqlite")
    try:
        old = Message(b"1", None, {}, "old", time.time() - 3600)
        for incarnation in ("a", "b", "b", "c"):  # "b" folded twice: one end
            await record.ended(incarnation)
        new = Message(b"2", None, {}, "new", time.time() + 120)  # published after the ends
        deliveries = [
            Delivery("q", "g", "old", old, deliveries=9),
            Delivery("q", "g", "few", old, deliveries=2),
            Delivery("q", "g", "new", new, deliveries=4),
        ]
        account(deliveries, record.ends())
        assert [d.accounted for d in deliveries] == [3, 1, 0]
    finally:
        record.close()
