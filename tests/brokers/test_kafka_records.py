"""Kafka specifics on a real broker: records of other producers, the DLQ topic, seek,
per-partition lag and in-flight, start position, delivery reports, credentials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, MailboxConfig
from troupe.brokers import BYTES, ConsumerBridge, ProducerBridge, Publish, connect
from troupe.brokers.kafka import KafkaBroker
from troupe.brokers.kafka.bridge import KafkaConsumerBridge, Seek
from troupe.brokers.message import (
    ENTRY_ID,
    ERROR_REASON,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_STREAM,
)
from troupe.supervisors import Backoff

FAST = Backoff(initial=0.001, maximum=0.01, jitter="none")


class Keep(Actor):
    """Keeps (payload, headers); fails payloads listed in ``poison`` every time."""

    def __init__(
        self, seen: list[tuple[Any, dict[str, str]]], poison: tuple[Any, ...] = ()
    ) -> None:
        self.seen = seen
        self.poison = poison

    def receive(self, message: Any) -> None:
        if message in self.poison:
            raise ValueError(f"cannot take {message!r}")
        self.seen.append((message, dict(self.headers)))


def kafka(url: str, tmp_path: Path, **options: Any) -> KafkaBroker:
    broker = connect(url, journal_dir=tmp_path / "journals", **options)
    assert isinstance(broker, KafkaBroker)
    return broker


async def raw_records(broker: KafkaBroker, topic: str) -> list[Any]:
    consumer = broker.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(broker.topic(topic), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=3000)
        return list(batch.get(tp, []))
    finally:
        await consumer.stop()


async def test_records_of_other_producers_are_consumed_and_unreadable_ones_dead_lettered(
    kafka_url: str, tmp_path: Path
) -> None:
    """Plain records (no troupe headers) reach the target as bytes with their headers; one
    whose key is not UTF-8 goes to the DLQ topic as the same record (key, value, headers
    byte for byte) with the reason and its origin added."""
    broker = kafka(kafka_url, tmp_path)
    await broker.ensure_topic(broker.topic("ext"))
    producer = await broker.producer()
    topic = broker.topic("ext")
    await producer.send_and_wait(topic, b"\x00plain bytes", key=b"k1", headers=[("h", b"v")])
    await producer.send_and_wait(topic, b"bad key", key=b"\xff\xfe", headers=[("x", b"\x80")])
    await producer.send_and_wait(topic, None, key=b"k2")  # a tombstone: an empty body
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Keep, seen)
        bridge = system.spawn(
            ConsumerBridge, broker, "ext", "g", target, serializer=BYTES, retry=FAST, block=0.05
        )
        await eventually(lambda: len(seen) == 2)
        await eventually(lambda: pending_is(broker, "ext", "g", 0))
        stats = system.cell_of(bridge).actor.stats  # type: ignore[attr-defined]
    assert [m for m, _ in seen] == [b"\x00plain bytes", b""]
    assert seen[0][1]["h"] == "v"
    assert seen[0][1][ENTRY_ID] == "0:0"
    assert stats.malformed == 1
    [dead] = await raw_records(broker, "ext.dlq")
    assert (dead.key, dead.value) == (b"\xff\xfe", b"bad key")
    headers = dict(dead.headers)
    assert headers["x"] == b"\x80"  # the original header, byte for byte
    assert b"not UTF-8" in headers[ERROR_REASON]
    assert headers[ORIGINAL_STREAM] == b"ext"
    assert (headers[ORIGINAL_PARTITION], headers[ORIGINAL_OFFSET]) == (b"0", b"1")
    await broker.close()


async def test_a_failing_message_goes_to_the_dlq_topic_and_its_partition_moves_on(
    kafka_url: str, tmp_path: Path
) -> None:
    broker = kafka(kafka_url, tmp_path)
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Keep, seen, ("poison",))
        system.spawn(
            ConsumerBridge, broker, "t", "g", target, max_deliveries=3, retry=FAST, block=0.05
        )
        await broker.publish_messages("t", [broker.message(p) for p in ("a", "poison", "b")])
        # the product's own bounds: the first assignment comes within join_timeout, the first
        # produce to the just-created attempts and DLQ topics within request_timeout each
        patience = broker.join_timeout + 2 * broker.request_timeout

        def a_and_b_handled() -> bool:
            return len(seen) == 2

        async def committed_past_the_poison() -> bool:
            return await pending_is(broker, "t", "g", 0)

        await eventually(a_and_b_handled, patience)
        await eventually(committed_past_the_poison, patience)
    [dead] = await broker.dead_letters("t")
    assert broker.serializer.loads(dead.body) == "poison"
    assert "cannot take 'poison'" in dead.headers[ERROR_REASON]
    assert dead.headers[ORIGINAL_PARTITION] == "0"
    assert dead.headers[ORIGINAL_OFFSET] == "1"
    assert [m for m, _ in seen] == ["a", "b"]
    await broker.close()


async def pending_is(broker: KafkaBroker, topic: str, group: str, n: int) -> bool:
    return await broker.pending(topic, group) == n


async def test_seek_by_offset_and_by_time_on_the_bridge(kafka_url: str, tmp_path: Path) -> None:
    broker = kafka(kafka_url, tmp_path)
    seen: list[tuple[Any, dict[str, str]]] = []
    await broker.publish_messages("s", [broker.message(i) for i in range(10)])
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await broker.publish_messages("s", [broker.message(i) for i in range(10, 20)])
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Keep, seen)
        bridge = system.spawn(KafkaConsumerBridge, broker, "s", "g", target, block=0.05)
        await eventually(lambda: len(seen) == 20)
        assert await bridge.ask(Seek(offsets={0: 15})) == {0: 15}
        await eventually(lambda: len(seen) == 25)
        assert await bridge.ask(Seek(timestamp=middle)) == {0: 10}
        await eventually(lambda: len(seen) == 35)
        await eventually(lambda: pending_is(broker, "s", "g", 0))
    assert [m for m, _ in seen] == [*range(20), *range(15, 20), *range(10, 20)]
    await broker.close()


async def test_seek_an_idle_group(kafka_url: str, tmp_path: Path) -> None:
    broker = kafka(kafka_url, tmp_path)
    await broker.publish_messages("s", [broker.message(i) for i in range(6)])
    assert await broker.seek_group("s", "g", offsets={0: 4}) == {0: 4}
    assert await broker.pending("s", "g") == 2
    session = await broker.consume("s", "g", "c", window=10)
    taken = await session.fetch(10, 0)
    await session.close()
    session.attempts.close()
    await broker.close()
    assert [broker.serializer.loads(d.message.body) for d in taken if d.message] == [4, 5]


class Stuck(Actor):
    mailbox: ClassVar[MailboxConfig | None] = MailboxConfig(capacity=4)

    def __init__(self, gate: asyncio.Event, done: list[Any]) -> None:
        self.gate = gate
        self.done = done

    async def receive(self, message: Any) -> None:
        await self.gate.wait()
        self.done.append(message)


async def test_lag_and_in_flight_per_partition_and_pause_when_the_mailbox_is_full(
    kafka_url: str, tmp_path: Path
) -> None:
    broker = kafka(kafka_url, tmp_path, partitions=4)
    await broker.publish_messages("p", [broker.message(i, key=f"k{i % 8}") for i in range(200)])
    gate = asyncio.Event()
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Stuck, gate, done)
        system.spawn(ConsumerBridge, broker, "p", "g", target, consumer="c", block=0.05)
        stats = broker.stats.consumer("p", "g", "c")
        await eventually(lambda: stats.in_flight >= 1 and len(stats.partitions) == 4)
        await asyncio.sleep(0.3)
        parts = stats.partitions
        assert sum(p.in_flight for p in parts.values()) <= 5  # 4 queued + 1 being handled
        assert await broker.pending("p", "g") == 200  # nothing committed yet
        lags = [p.lag for p in parts.values()]
        assert all(lag is not None for lag in lags)
        assert sum(lag or 0 for lag in lags) >= 195
        gate.set()
        await eventually(lambda: len(done) == 200)
        await eventually(lambda: pending_is(broker, "p", "g", 0))
        await eventually(lambda: all(p.in_flight == 0 for p in stats.partitions.values()))
    await broker.close()


async def test_a_new_group_starting_at_latest_skips_older_records(
    kafka_url: str, tmp_path: Path
) -> None:
    broker = kafka(kafka_url, tmp_path, start="latest")
    await broker.publish("s", "old")
    await broker.ensure_group("s", "late")  # the group's position is fixed here
    await broker.publish("s", "new")
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Keep, seen)
        system.spawn(ConsumerBridge, broker, "s", "late", target, block=0.05)
        await eventually(lambda: len(seen) == 1)
        await broker.publish("s", "newer")
        await eventually(lambda: len(seen) == 2)
    assert [m for m, _ in seen] == ["new", "newer"]
    await broker.close()


async def test_delivery_reports_and_key_partitioning(kafka_url: str, tmp_path: Path) -> None:
    broker = kafka(kafka_url, tmp_path, partitions=3, linger=0.01, compression="gzip")
    reports = await broker.produce("r", [broker.message(i, key=f"user-{i % 4}") for i in range(40)])
    by_key: dict[str, set[int]] = {}
    for i, (partition, _offset) in enumerate(reports):
        by_key.setdefault(f"user-{i % 4}", set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values())  # one partition per key
    # the Java client's placement (murmur2 of the key), as a single send would choose
    for key, parts in by_key.items():
        assert parts == {DefaultPartitioner()(key.encode(), [0, 1, 2], [0, 1, 2])}
    offsets: dict[int, list[int]] = {}
    for partition, offset in reports:
        offsets.setdefault(partition, []).append(offset)
    assert all(o == list(range(len(o))) for o in offsets.values())
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker, "r")
        message_id = await producer.ask(Publish("asked", key="user-1"))
        assert broker.report(message_id) == (reports[1][0], len(offsets[reports[1][0]]))
    await broker.close()


def test_credentials_never_show() -> None:
    broker = connect("kafka://app:s3cret@127.0.0.1:1,127.0.0.1:2?namespace=x.")
    assert "s3cret" not in repr(broker)
    assert "s3cret" not in broker.url
    assert isinstance(broker, KafkaBroker)
    assert broker.bootstrap == "127.0.0.1:1,127.0.0.1:2"
    assert broker.topic("orders") == "x.orders"
    options = broker.client_options()
    assert options["sasl_plain_password"] == "s3cret"
    assert options["security_protocol"] == "SASL_PLAINTEXT"


def test_bad_settings_name_the_setting() -> None:
    import pytest

    from troupe import ConfigError

    for options, setting in (
        ({"partitions": 0}, "partitions"),
        ({"compression": "brotli"}, "compression"),
        ({"start": "middle"}, "start"),
        ({"session_timeout": 0}, "session_timeout"),
    ):
        with pytest.raises(ConfigError) as error:
            connect("kafka://127.0.0.1:9092", **options)
        assert error.value.setting == setting


class FailTwice(Actor):
    """Fails ``bad`` twice (counted across restarts), records the order of handling."""

    def __init__(self, seen: list[Any], bad: int, failures: list[int]) -> None:
        self.seen = seen
        self.bad = bad
        self.failures = failures

    def receive(self, message: Any) -> None:
        if message == self.bad and len(self.failures) < 2:
            self.failures.append(message)
            raise RuntimeError("not yet")
        self.seen.append(message)


async def test_partition_window_1_keeps_order_through_retries(
    kafka_url: str, tmp_path: Path
) -> None:
    broker = kafka(kafka_url, tmp_path, partitions=2, partition_window=1)
    await broker.publish_messages("o", [broker.message(i, key=f"k{i % 2}") for i in range(30)])
    seen: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(FailTwice, seen, 4, [])
        system.spawn(ConsumerBridge, broker, "o", "g", target, retry=FAST, block=0.05)
        await eventually(lambda: len(seen) == 30)
        await eventually(lambda: pending_is(broker, "o", "g", 0))
    for key in (0, 1):  # each key (partition) in publish order, the retried one included
        assert [m for m in seen if m % 2 == key] == list(range(key, 30, 2))
    await broker.close()


async def test_a_large_record_in_a_batch_keeps_its_place_in_the_partition(
    kafka_url: str, tmp_path: Path
) -> None:
    """A record too large to share a batch goes alone, after the records before it."""
    broker = kafka(kafka_url, tmp_path, partitions=2, max_batch_bytes=4096)
    bodies = [b"a" * 10, b"b" * 3000, b"c" * 10, b"d" * 3000, b"e" * 10]
    messages = [broker.message(body, key="same", serializer=BYTES) for body in bodies]
    reports = await broker.produce("big", messages)
    assert len({partition for partition, _ in reports}) == 1
    offsets = [offset for _, offset in reports]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    await broker.close()
