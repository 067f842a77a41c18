"""Kafka consumer groups on a real broker: rebalances, kill -9 of a consumer, broker restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from redis.asyncio import Redis

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, ProducerBridge, Publish, connect
from troupe.brokers.attempts import JournaledAttempts
from troupe.brokers.kafka import KafkaBroker
from troupe.brokers.kafka.session import KafkaSession
from troupe.brokers.message import DELIVERIES, ENTRY_ID, ERROR_REASON
from troupe.brokers.servers.kafka import KafkaServer
from troupe.supervisors import Backoff

FAST = Backoff(initial=0.01, maximum=0.05, jitter="none")
CONSUMER = Path(__file__).with_name("kafka_effect_consumer.py")


class Log(Actor):
    """Appends (consumer, partition, offset, payload) per handling to a shared list."""

    def __init__(self, who: str, log: list[tuple[str, int, int, Any]], pause: float) -> None:
        self.who = who
        self.log = log
        self.pause = pause

    async def receive(self, message: Any) -> None:
        partition, offset = self.headers[ENTRY_ID].split(":")
        if self.pause:
            await asyncio.sleep(self.pause)
        self.log.append((self.who, int(partition), int(offset), message))


def first_handlings(log: list[tuple[str, int, int, Any]]) -> dict[int, list[int]]:
    """Per partition, the offsets in the order they were first handled."""
    seen: set[tuple[int, int]] = set()
    out: dict[int, list[int]] = {}
    for _, partition, offset, _ in log:
        if (partition, offset) not in seen:
            seen.add((partition, offset))
            out.setdefault(partition, []).append(offset)
    return out


async def test_members_join_and_leave_mid_stream_without_loss_or_disorder(
    kafka_url: str, tmp_path: Path
) -> None:
    """Two bridges in one group over 4 partitions: a member is added, then the first one
    is stopped, while messages keep coming. Every message is handled, each partition's
    messages are first handled in offset order, each member handles a partition in order
    and every key's messages in publish order."""
    broker = connect(
        kafka_url, partitions=4, session_timeout=2.0, journal_dir=tmp_path, rebalance_drain=5.0
    )
    assert isinstance(broker, KafkaBroker)
    total = 1200
    log: list[tuple[str, int, int, Any]] = []
    options: dict[str, Any] = {"retry": FAST, "block": 0.05, "drain_timeout": 5.0}
    async with ActorSystem(restart=TOLERANT) as system:
        a_target = system.spawn(Log, "a", log, 0.0005)
        b_target = system.spawn(Log, "b", log, 0.0005)
        a = system.spawn(ConsumerBridge, broker, "orders", "g", a_target, consumer="a", **options)
        await broker.ensure_group("orders", "g")

        async def publish() -> None:
            for start in range(0, total, 50):
                batch = [
                    broker.message({"n": n, "key": f"k{n % 16}"}, key=f"k{n % 16}")
                    for n in range(start, start + 50)
                ]
                await broker.publish_messages("orders", batch)
                await asyncio.sleep(0.02)

        producing = asyncio.ensure_future(publish())
        await eventually(lambda: len(log) >= 200)
        system.spawn(ConsumerBridge, broker, "orders", "g", b_target, consumer="b", **options)
        await eventually(lambda: any(who == "b" for who, *_ in log))  # b got partitions
        await eventually(lambda: len(log) >= 700)
        await a.stop()  # a member leaves: b takes its partitions over
        await producing
        await eventually(lambda: {m["n"] for *_, m in log} == set(range(total)), timeout=60)
        await eventually(lambda: pending_is(broker, "orders", "g", 0), timeout=30)
    await broker.close()
    handlers = {who for who, *_ in log}
    assert handlers == {"a", "b"}
    for partition, offsets in first_handlings(log).items():
        assert offsets == sorted(offsets), f"partition {partition} out of order"
    for who in ("a", "b"):
        per: dict[int, list[int]] = {}
        for w, partition, offset, _ in log:
            if w == who:
                per.setdefault(partition, []).append(offset)
        for partition, offsets in per.items():
            runs = [o for i, o in enumerate(offsets) if i == 0 or o < offsets[i - 1]]
            assert len(runs) <= 3, f"{who} went back on partition {partition} {len(runs)} times"
    by_key: dict[str, list[int]] = {}
    seen: set[int] = set()
    for *_, message in log:
        if message["n"] not in seen:
            seen.add(message["n"])
            by_key.setdefault(message["key"], []).append(message["n"])
    assert all(ns == sorted(ns) for ns in by_key.values())
    assert len(log) - total < 400, f"{len(log) - total} duplicates"


async def pending_is(broker: Any, topic: str, group: str, n: int) -> bool:
    return bool(await broker.pending(topic, group) == n)


class Owned:
    """An ownership listener that keeps the partitions its session owns."""

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.revokes = 0

    async def revoked(self, partitions: Sequence[int]) -> None:
        self.owned.difference_update(partitions)
        self.revokes += 1

    def assigned(self, partitions: Sequence[int]) -> None:
        self.owned.update(partitions)


async def test_records_of_a_new_assignment_wait_until_it_is_complete(
    kafka_url: str, tmp_path: Path
) -> None:
    """A member's assignment callback may wait (here for the journal directory's fold
    lock, which another folder on the host holds) while the client already fetches the
    new partitions. Nothing of them is handed out before the ownership listener is told
    of them, and a window filled meanwhile does not leave them paused for good: once
    the callback ends every record of the member's partition is delivered (issue 24: its
    records stayed paused in the client and were never delivered)."""
    options: dict[str, Any] = {"partitions": 2, "session_timeout": 3.0, "rebalance_drain": 1.0}
    first = connect(kafka_url, journal_dir=tmp_path / "a", **options)
    second = connect(kafka_url, journal_dir=tmp_path / "b", **options)
    assert isinstance(first, KafkaBroker)
    await first.publish_messages("t", [first.message(n, key=f"k{n}") for n in range(200)])
    a = await first.consume("t", "g", "a", window=10)
    b = None
    owned = Owned()
    a.listen(owned)
    assert owned.owned == {0, 1}
    journal = a.attempts
    assert isinstance(journal, JournaledAttempts)
    loop = asyncio.get_running_loop()
    early: list[tuple[int | None, set[int]]] = []  # (partition, owned) per delivery
    taken = []
    try:
        async with journal.folding():  # another folder: a's next assignment waits for it
            b = await asyncio.wait_for(second.consume("t", "g", "b", window=10), 30)  # joins
            assert owned.revokes == 1
            until = loop.time() + 1.5
            while loop.time() < until:  # a keeps fetching, as its bridge does
                for delivery in await a.fetch(10, 0.1):
                    early.append((delivery.partition, set(owned.owned)))
                    taken.append(delivery)
        await eventually(lambda: len(owned.owned) == 1)  # the other one is b's
        (partition,) = owned.owned
        probe = first.consumer(enable_auto_commit=False)
        await probe.start()
        try:
            tp = TopicPartition(first.topic("t"), partition)
            end = (await probe.end_offsets([tp]))[tp]
        finally:
            await probe.stop()
        assert end > 10  # more than a window: the partition has to be resumed
        seen = {d.offset for d in taken if d.partition == partition}
        await a.ack(taken)

        async def delivered_all() -> bool:
            got = await a.fetch(10, 0.1)
            seen.update(d.offset for d in got if d.partition == partition)
            await a.ack(got)
            return seen == set(range(end))

        await eventually(delivered_all, timeout=20)
        assert all(p in mine for p, mine in early), f"handed out before assigned: {early}"
    finally:
        await a.close()
        if b is not None:
            await b.close()
        await first.close()
        await second.close()


async def test_each_assignment_reads_the_attempts_record_written_since_the_last(
    kafka_url: str, tmp_path: Path
) -> None:
    """A member keeps one reader of the group's attempts record from its join to its close:
    starts that the previous owner of a partition added to the record after this member
    joined are read when the partition comes to it (the reader reads again at every
    assignment), and nothing of the record is left out by reading it early."""
    options: dict[str, Any] = {"partitions": 2, "session_timeout": 3.0, "rebalance_drain": 1.0}
    first = connect(kafka_url, journal_dir=tmp_path / "a", **options)
    second = connect(kafka_url, journal_dir=tmp_path / "b", **options)
    assert isinstance(first, KafkaBroker) and isinstance(second, KafkaBroker)
    await first.publish_messages("t", [first.message(n, key=f"k{n}") for n in range(20)])
    a = await first.consume("t", "g", "a", window=50)
    b = None
    owned = Owned()
    a.listen(owned)
    assert isinstance(a, KafkaSession)
    assert a.record.counts == {}

    async def keep_fetching() -> None:  # as a bridge does, acking what it gets
        while True:
            await a.ack(await a.fetch(10, 0.05))

    fetching = asyncio.create_task(keep_fetching())
    try:
        b = await asyncio.wait_for(second.consume("t", "g", "b", window=50), 30)
        assert isinstance(b, KafkaSession)
        await eventually(lambda: len(owned.owned) == 1)
        (theirs,) = {0, 1} - owned.owned

        async def never_committed(partition: int) -> int | None:
            return None

        entry = f"{theirs}:19"
        await b.record.add([(entry, 2, "b-marker")], never_committed)  # b's failed starts
        await b.close()  # b leaves: its partition comes to a
        await eventually(lambda: owned.owned == {0, 1}, timeout=20)
        assert a.record.get(entry) == 2
    finally:
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fetching
        await a.close()
        if b is not None:
            await b.close()
        await first.close()
        await second.close()


def start_consumer(
    kafka_url: str, redis_url: str, topic: str, group: str, journals: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(CONSUMER), kafka_url, redis_url, topic, group, str(journals), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


async def test_kill_9_of_a_consumer_process_loses_nothing_and_effects_happen_once(
    kafka_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A consumer process is killed with kill -9 three times mid-stream and started again:
    every message is handled at least once (some twice: their offsets were not committed
    yet) and every effect happens once through the idempotency store."""
    broker = connect(kafka_url, partitions=2)
    total = 800
    await broker.publish_messages(
        "payments", [broker.message({"n": n}, key=f"c{n % 7}") for n in range(total)]
    )
    redis = Redis.from_url(redis_url)
    rng = random.Random(7)
    process = None
    try:
        for _round in range(3):
            process = start_consumer(kafka_url, redis_url, "payments", "pay", tmp_path)
            await eventually(lambda p=process: redis.exists(f"ready:{p.pid}"), timeout=30)
            handled_before = await redis.hlen("handled")
            goal = handled_before + rng.randint(60, 160)
            await eventually(lambda g=goal: hlen_at_least(redis, "handled", g), timeout=30)
            kill(process)
        process = start_consumer(kafka_url, redis_url, "payments", "pay", tmp_path)
        await eventually(lambda: hlen_at_least(redis, "effects", total), timeout=60)
        await eventually(lambda: pending_is(broker, "payments", "pay", 0), timeout=30)
        handled = {int(k): int(v) for k, v in (await redis.hgetall("handled")).items()}
        effects = {int(k): int(v) for k, v in (await redis.hgetall("effects")).items()}
    finally:
        if process is not None:
            kill(process)
        await redis.aclose()
        await broker.close()
    assert set(handled) == set(range(total))  # at least once
    assert effects == dict.fromkeys(range(total), 1)  # effects once
    assert any(times > 1 for times in handled.values()), "no redelivery: the kills tested nothing"


async def hlen_at_least(redis: Redis, key: str, n: int) -> bool:
    return bool(await redis.hlen(key) >= n)


@pytest.fixture
def restartable(kafka_server: KafkaServer | None) -> Iterator[KafkaServer]:
    """The session's Kafka node, or a node of this test's own when an external broker is used."""
    if kafka_server is not None:
        yield kafka_server
        kafka_server.start()
        return
    with KafkaServer() as own:
        yield own


async def test_a_broker_restart_is_survived(restartable: KafkaServer, tmp_path: Path) -> None:
    """The broker goes down mid-stream for a second: every asked publish is confirmed once
    it is back, and every message is handled."""
    url = f"{restartable.url}?namespace=restart{os.getpid()}{int(time.time())}."
    broker = connect(url, journal_dir=tmp_path, session_timeout=2.0, request_timeout=5.0)
    log: list[tuple[str, int, int, Any]] = []
    total = 300
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Log, "c", log, 0.0)
        system.spawn(ConsumerBridge, broker, "events", "g", target, retry=FAST, block=0.05)
        producer = system.spawn(ProducerBridge, broker, "events", delivery_timeout=60.0)
        await eventually(lambda: bool(broker.stats.consumers))

        async def send(n: int) -> str:
            reply: str = await producer.ask(Publish({"n": n}, key=f"k{n % 5}"), timeout=90)
            return reply

        first = await asyncio.gather(*(send(n) for n in range(0, 100)))
        await eventually(lambda: len({m["n"] for *_, m in log}) >= 100)
        loop = asyncio.get_running_loop()
        down = loop.run_in_executor(None, restartable.restart, 1.0)
        rest = await asyncio.gather(*(send(n) for n in range(100, total)))
        await down
        await eventually(lambda: {m["n"] for *_, m in log} == set(range(total)), timeout=60)
    await broker.close()
    assert len(set(first + rest)) == total  # every ask confirmed, one id each


async def test_a_message_that_kills_its_consumer_reaches_the_dlq_after_max_deliveries(
    kafka_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Every start of the poison message ends its process with os._exit; the starts are
    journaled, folded into the attempts topic by the next process, and the third restart
    dead-letters it without running it again; the records behind it are handled."""
    broker = connect(kafka_url)
    await broker.publish_messages(
        "jobs",
        [broker.message({"n": 0, "exit": True})] + [broker.message({"n": n}) for n in range(1, 21)],
    )
    redis = Redis.from_url(redis_url)
    process = None
    try:
        for _ in range(6):
            process = start_consumer(kafka_url, redis_url, "jobs", "g", tmp_path, "3")
            deadline = time.monotonic() + 40
            while process.poll() is None and await redis.hlen("effects") < 20:
                assert time.monotonic() < deadline, "the consumer neither died nor finished"
                await asyncio.sleep(0.05)
            if process.poll() is None:
                break
            assert process.returncode == 3  # killed by the poison message
        await eventually(lambda: pending_is(broker, "jobs", "g", 0), timeout=30)
        starts = int(await redis.hget("starts", "0") or 0)
        handled = await redis.hlen("effects")
        dead = await broker.dead_letters("jobs")
    finally:
        if process is not None:
            kill(process)
        await redis.aclose()
        await broker.close()
    assert starts == 3  # exactly max_deliveries starts, each one killed its process
    [poison] = dead
    assert poison.headers[DELIVERIES] == "3"
    assert "started 3 times" in poison.headers[ERROR_REASON]
    assert handled == 20
