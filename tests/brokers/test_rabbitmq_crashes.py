"""kill -9 of a RabbitMQ consumer process mid-stream: nothing lost, effects once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.message import ERROR_REASON

HERE = Path(__file__).parent
TOTAL = 3000


def start_consumer(
    url: str, db: Path, journals: Path, max_deliveries: int = 50
) -> subprocess.Popen[bytes]:
    Path(str(db) + ".ready").unlink(missing_ok=True)
    env = {**os.environ, "TMPDIR": str(journals)}  # attempt journals: this test's own
    script = str(HERE / "rabbitmq_effect_consumer.py")
    process = subprocess.Popen(
        [sys.executable, script, url, "work", str(db), str(max_deliveries)],
        env=env,
        cwd=HERE.parent.parent,
    )
    deadline = time.monotonic() + 30
    while not Path(str(db) + ".ready").exists():
        if process.poll() is not None:
            return process  # died at once (a poison message it took first)
        assert time.monotonic() < deadline, "the consumer process did not start"
        time.sleep(0.02)
    return process


def count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=10.0) as conn:
        return int(conn.execute(sql).fetchone()[0])


class Drop(Actor):
    def receive(self, message: Any) -> None:
        return None


async def test_kill_9_consumer_mid_stream_loses_nothing_and_effects_once(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "effects.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE handled (id TEXT, attempt TEXT)")
        conn.execute("CREATE TABLE effects (id TEXT PRIMARY KEY, n INTEGER)")
    journals = tmp_path / "tmp"
    journals.mkdir()
    broker = connect(rabbitmq_url)
    for start in range(0, TOTAL, 500):
        await broker.publish_messages(
            "work", [broker.message({"n": i}) for i in range(start, start + 500)]
        )
    rng = random.Random(7)
    kills = 0
    while count(db, "SELECT COUNT(*) FROM effects") < TOTAL and kills < 5:
        process = start_consumer(rabbitmq_url, db, journals)
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills == 5, "the stream ended before the kills: make it longer"
    process = start_consumer(rabbitmq_url, db, journals)
    try:
        await eventually(lambda: count(db, "SELECT COUNT(*) FROM effects") == TOTAL, timeout=120)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    # what the last process handled without acking comes back: handled again, no new effect
    async with ActorSystem(restart=TOLERANT) as system:
        system.spawn(ConsumerBridge, broker, "work", "g", system.spawn(Drop), block=0.05)
        await eventually(lambda: _empty(broker), timeout=30)
    assert count(db, "SELECT COUNT(*) FROM effects") == TOTAL
    assert count(db, "SELECT COUNT(DISTINCT n) FROM effects") == TOTAL
    handled = count(db, "SELECT COUNT(*) FROM handled")
    assert handled >= TOTAL
    # a kill that lands in a handler costs that message an attempt (counted at its start)
    assert count(db, "SELECT COUNT(*) FROM handled WHERE attempt != '1'") > 0
    assert await broker.dead_letters("work") == []
    await broker.close()


async def test_a_message_that_kills_its_consumer_process_reaches_the_dlq(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    """Every start of the poison kills the process (os._exit); after max_deliveries starts
    the next consumer dead-letters it without running it, and the healthy ones are handled."""
    db = tmp_path / "effects.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE handled (id TEXT, attempt TEXT)")
        conn.execute("CREATE TABLE effects (id TEXT PRIMARY KEY, n INTEGER)")
    journals = tmp_path / "tmp"
    journals.mkdir()
    broker = connect(rabbitmq_url)
    await broker.publish_messages("work", [broker.message({"n": n}) for n in (0, -1, 1, 2)])
    deaths = 0
    for _ in range(10):
        process = start_consumer(rabbitmq_url, db, journals, max_deliveries=3)

        async def died_or_done(process: subprocess.Popen[bytes] = process) -> bool:
            return process.poll() is not None or await _done(db, broker)

        try:
            await eventually(died_or_done, timeout=30)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
        if process.returncode == 3:
            deaths += 1
        elif await _done(db, broker):
            break
    assert deaths == 3  # one per started attempt: max_deliveries
    [dead] = await broker.dead_letters("work")
    assert broker.serializer.loads(dead.body) == {"n": -1}
    assert "started 3 times" in dead.headers[ERROR_REASON]
    assert count(db, "SELECT COUNT(*) FROM effects") == 3
    await broker.close()


async def _done(db: Path, broker: Any) -> bool:
    return count(db, "SELECT COUNT(*) FROM effects") == 3 and bool(
        await broker.dead_letters("work")
    )


async def _empty(broker: Any) -> bool:
    return int(await broker.pending("work", "g")) == 0
