"""Kafka bridge throughput: end to end through troupe's bridges vs a raw aiokafka loop.

Question: how many 100-byte messages per second go publish -> consumer bridge ->
actor -> offset commit on Apache Kafka (one partition, acks=all, idempotent producer,
linger 5 ms), compared with a hand-written aiokafka loop in the same run on the same
broker: the same producer settings sending batches of 100 (``send`` each, then wait
for the batch), and a consumer in a group doing ``getmany(max_records=100)`` with a
commit every 0.1 s (troupe's default ``commit_interval``). Target: troupe >= 0.7x raw.
Also the consumer side alone (a backlog of n consumed through the bridge vs
``getmany`` + commits, both timed from joining the group) and the ProducerBridge's
publish rate against the raw producer alone.

Runs alternate (raw, troupe) so both see the same machine load; the best rates, the
per-pair ratios and their median, and this process's CPU time per message are
printed and written. The script starts its own Kafka node (``KafkaServer``: the jars
that ``scripts/test`` fetches), or uses ``TROUPE_KAFKA_BOOTSTRAP``.

    python benchmarks/brokers_kafka.py --quick --json benchmarks/results/brokers_kafka.json
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _brokers_common import Sink, paired, time_producer_bridge
from _common import Report, parse_args
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

import troupe
from troupe import ActorSystem
from troupe.brokers import BYTES, ConsumerBridge, connect
from troupe.brokers.kafka import KafkaBroker
from troupe.brokers.servers.kafka import KafkaServer

PAYLOAD = b"x" * 100
BATCH = 100
COMMIT_EVERY = 0.1
LINGER_MS = 5


async def troupe_run(url: str, n: int, topic: str) -> float:
    """Seconds for n messages: publish in batches, consume through a bridge, commit."""
    broker = connect(url, linger=LINGER_MS / 1000, commit_interval=COMMIT_EVERY)
    assert isinstance(broker, KafkaBroker)
    await broker.connect()
    await broker.ensure_group(topic, "bench")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    async with ActorSystem("bench") as system:
        sink = system.spawn(Sink, n, done)
        system.spawn(
            ConsumerBridge,
            broker,
            topic,
            "bench",
            sink,
            consumer="c",
            serializer=BYTES,
            batch=BATCH,
            block=0.05,
        )
        stats = broker.stats.consumer(topic, "bench", "c")
        while not stats.partitions:  # joined  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            count = min(BATCH, n - first)
            await broker.publish_messages(topic, [broker.message(PAYLOAD) for _ in range(count)])
        await done
        while stats.acked < n:  # the last acks are in flight  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
    await broker.close()
    return elapsed


async def raw_run(url: str, n: int, topic: str) -> float:
    """The same by hand with aiokafka: batches of sends, getmany + periodic commits."""
    bootstrap = url.split("://", 1)[1]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=LINGER_MS
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")  # creates the topic
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench",
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50)
    for tp in consumer.assignment():
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
    handled = 0

    def handle(body: bytes) -> None:
        nonlocal handled
        handled += 1

    async def publish() -> None:
        for first in range(0, n, BATCH):
            futures = [await producer.send(topic, PAYLOAD) for _ in range(min(BATCH, n - first))]
            await asyncio.gather(*futures)

    async def consume() -> None:
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_EVERY
        while handled < n:
            batch = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            for records in batch.values():
                for record in records:
                    handle(record.value)
            if loop.time() >= next_commit:
                next_commit = loop.time() + COMMIT_EVERY
                await consumer.commit()
        await consumer.commit()

    start = time.perf_counter()
    await asyncio.gather(publish(), consume())
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return elapsed


async def _fill(url: str, n: int, topic: str) -> None:
    """Put n messages on ``topic`` (not timed)."""
    broker = connect(url, linger=LINGER_MS / 1000)
    await broker.ensure_group(topic, "bench")
    for first in range(0, n, 1000):
        count = min(1000, n - first)
        await broker.publish_messages(topic, [broker.message(PAYLOAD) for _ in range(count)])
    await broker.close()


async def troupe_backlog_run(url: str, n: int, topic: str) -> float:
    """Seconds to consume a backlog of n through a bridge into an actor, commits on."""
    await _fill(url, n, topic)
    broker = connect(url, commit_interval=COMMIT_EVERY)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    async with ActorSystem("bench") as system:
        start = time.perf_counter()
        sink = system.spawn(Sink, n, done)
        system.spawn(
            ConsumerBridge, broker, topic, "bench", sink, consumer="c", serializer=BYTES, block=0.05
        )
        stats = broker.stats.consumer(topic, "bench", "c")
        await done
        while stats.acked < n:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
    await broker.close()
    return elapsed


async def raw_backlog_run(url: str, n: int, topic: str) -> float:
    """The same backlog by hand: join, getmany(max_records=100), commit every 0.1 s."""
    await _fill(url, n, topic)
    bootstrap = url.split("://", 1)[1]
    start = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    handled = 0
    loop = asyncio.get_running_loop()
    next_commit = loop.time() + COMMIT_EVERY
    while handled < n:
        batch = await consumer.getmany(timeout_ms=50, max_records=BATCH)
        for records in batch.values():
            for record in records:
                if record.value is not None:
                    handled += 1
        if loop.time() >= next_commit:
            next_commit = loop.time() + COMMIT_EVERY
            await consumer.commit()
    await consumer.commit()
    elapsed = time.perf_counter() - start
    await consumer.stop()
    return elapsed


async def producer_run(url: str, n: int, topic: str) -> float:
    """Seconds for n told messages through a ProducerBridge until the broker confirmed all."""
    broker = connect(url, linger=LINGER_MS / 1000)
    await broker.connect()
    await broker.ensure_group(topic, "bench")
    elapsed = await time_producer_bridge(broker, topic, n, PAYLOAD, BATCH)
    await broker.close()
    return elapsed


async def raw_publish_run(url: str, n: int, topic: str) -> float:
    """The raw producer alone: batches of sends, each batch awaited."""
    bootstrap = url.split("://", 1)[1]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=LINGER_MS
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        futures = [await producer.send(topic, PAYLOAD) for _ in range(min(BATCH, n - first))]
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await producer.stop()
    return elapsed


CPU: dict[str, list[float]] = {}


def once(n: int, fn: Any, url: str) -> float:
    """One run's rate; its CPU time per message goes to ``CPU``."""
    cpu = time.process_time()
    seconds = troupe.run(fn(url, n, f"bench-{fn.__name__}-{time.time_ns()}"))
    CPU.setdefault(fn.__name__, []).append((time.process_time() - cpu) / n)
    return n / seconds


def cpu_us(fn: Any) -> float:
    return round(min(CPU[fn.__name__]) * 1e6, 2)


@contextlib.contextmanager
def kafka_url() -> Iterator[str]:
    external = os.environ.get("TROUPE_KAFKA_BOOTSTRAP")
    if external:
        yield f"kafka://{external}"
        return
    with KafkaServer() as server:
        yield server.url


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 20_000 if args.quick else 100_000
    repeat = args.repeat or (3 if args.quick else 5)
    report = Report("brokers_kafka")
    with kafka_url() as url:
        raw_rates: list[float] = []
        troupe_rates: list[float] = []
        for _ in range(repeat):  # interleaved, so both see the same machine load
            raw_rates.append(once(n, raw_run, url))
            troupe_rates.append(once(n, troupe_run, url))
        pairs = paired(troupe_rates, raw_rates)
        report.add(
            "kafka_end_to_end",
            "msg/s",
            max(troupe_rates),
            {"aiokafka_raw_loop": max(raw_rates)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            target_ratio=0.7,
            ratio=max(troupe_rates) / max(raw_rates),
            paired_ratios=pairs,
            median_paired_ratio=statistics.median(pairs),
            cpu_us_per_msg={"troupe": cpu_us(troupe_run), "raw": cpu_us(raw_run)},
        )
        raw_backlog: list[float] = []
        bridge_backlog: list[float] = []
        for _ in range(repeat):
            raw_backlog.append(once(n, raw_backlog_run, url))
            bridge_backlog.append(once(n, troupe_backlog_run, url))
        report.add(
            "kafka_consume_backlog",
            "msg/s",
            max(bridge_backlog),
            {"aiokafka_getmany_commit": max(raw_backlog)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            ratio=max(bridge_backlog) / max(raw_backlog),
            median_paired_ratio=statistics.median(paired(bridge_backlog, raw_backlog)),
            note="both include joining the group",
        )
        raw_publish: list[float] = []
        bridge_publish: list[float] = []
        for _ in range(repeat):
            raw_publish.append(once(n, raw_publish_run, url))
            bridge_publish.append(once(n, producer_run, url))
        report.add(
            "kafka_producer_bridge",
            "msg/s",
            max(bridge_publish),
            {"aiokafka_producer_batches": max(raw_publish)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            batch=BATCH,
            ratio=max(bridge_publish) / max(raw_publish),
            median_paired_ratio=statistics.median(paired(bridge_publish, raw_publish)),
            cpu_us_per_msg={"troupe": cpu_us(producer_run), "raw": cpu_us(raw_publish_run)},
        )
        print(f"kafka end to end, troupe/raw per back-to-back pair: {pairs}")
    report.write(args.json)


if __name__ == "__main__":
    main()
