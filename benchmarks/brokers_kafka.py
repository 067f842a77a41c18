"""Kafka through troupe's bridges vs a raw aiokafka loop and FastStream's batch subscriber.

Questions: messages per second and client CPU per message, end to end (publish,
acked by the broker -> a 6-partition topic -> consumer group -> handler -> offset
commit) and consume only (a pre-filled topic drained and committed, timed from
joining the group). Sides (see ``_brokers_common``):

- troupe: ``ProducerBridge`` asks (100 in flight, each returns once the broker
  acked it) -> ``ConsumerBridge`` (default settings) -> a counting actor; JSON
  payloads; ``connect(url, partitions=6)``, every other broker setting default
  (acks=all, idempotent producer, linger 5 ms, commit every 0.1 s).
- raw: aiokafka with the same producer settings, ``send`` of 100 JSON-encoded
  values then waiting for their acks; a consumer in a group doing
  ``getmany(max_records=100)``, ``json.loads`` and the handler per record, a
  commit every 0.1 s and a last one at the end (commit after handling).
- faststream_batch: FastStream 0.7's Kafka subscriber with ``batch=True``
  (``max_records=100``, a group, ``AckPolicy.ACK``: committed after the handler
  returns), producer with the same settings, 100 ``publish`` calls in flight (each acked).
  Skipped with a note when FastStream is not installed.

Consume only also reports the median time to the first message handled (troupe and
raw). Targets: troupe >= 0.8x raw, end to end and consume only; ahead of FastStream's
batch subscriber. The script starts its own Kafka node (``KafkaServer``: the
jars that ``scripts/test`` fetches), or uses ``TROUPE_KAFKA_BOOTSTRAP``.

    python benchmarks/brokers_kafka.py --quick --json benchmarks/results/brokers_kafka.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _brokers_common import (
    FETCH,
    PAYLOAD,
    WINDOW,
    Counter,
    Stopwatch,
    Timing,
    add_row,
    bridges_consume_only,
    bridges_end_to_end,
    rounds,
)
from _common import Report, parse_args
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from troupe.brokers import connect
from troupe.brokers.servers import KafkaServer

try:
    import faststream.kafka as fs_kafka
    from faststream import AckPolicy
except ImportError:  # an optional peer
    fs_kafka = None

GROUP = "bench"
PARTITIONS = 6
COMMIT_EVERY = 0.1  # the broker's default commit_interval
LINGER_MS = 5  # the broker's default linger


def bootstrap(url: str) -> str:
    return url.split("://", 1)[1]


async def create_topic(url: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(url))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


# ----------------------------------------------------------------------------- troupe


async def troupe_end_to_end(url: str, n: int, topic: str) -> Timing:
    broker = connect(url, partitions=PARTITIONS)
    # timed once the group assigned the consumer its partitions
    return await bridges_end_to_end(
        broker, n, topic, GROUP, ready=lambda stats: bool(stats.partitions)
    )


async def troupe_consume_only(url: str, n: int, topic: str) -> Timing:
    return await bridges_consume_only(connect(url, partitions=PARTITIONS), n, topic, GROUP)


# ----------------------------------------------------------------------------- raw aiokafka


def raw_producer(url: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap(url), acks="all", enable_idempotence=True, linger_ms=LINGER_MS
    )


async def raw_publish(producer: AIOKafkaProducer, topic: str, n: int) -> None:
    for first in range(0, n, WINDOW):
        sends = [
            await producer.send(topic, json.dumps(PAYLOAD).encode())
            for _ in range(min(WINDOW, n - first))
        ]
        await asyncio.gather(*sends)


def raw_consumer(url: str, topic: str, reset: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap(url),
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset=reset,
    )


async def raw_consume(consumer: AIOKafkaConsumer, handle: Counter) -> None:
    loop = asyncio.get_running_loop()
    next_commit = loop.time() + COMMIT_EVERY
    while handle.count < handle.total:
        pages = await consumer.getmany(timeout_ms=500, max_records=FETCH)
        for records in pages.values():
            for record in records:
                handle(json.loads(record.value))
        if loop.time() >= next_commit:
            next_commit = loop.time() + COMMIT_EVERY
            await consumer.commit()
    await consumer.commit()


async def raw_end_to_end(url: str, n: int, topic: str) -> Timing:
    await create_topic(url, topic)
    producer = raw_producer(url)
    await producer.start()
    consumer = raw_consumer(url, topic, "earliest")
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50)
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    await asyncio.gather(raw_publish(producer, topic, n), raw_consume(consumer, handle))
    timing = watch.stop()
    await consumer.stop()
    await producer.stop()
    return timing


async def raw_consume_only(url: str, n: int, topic: str) -> Timing:
    await create_topic(url, topic)
    producer = raw_producer(url)
    await producer.start()
    await raw_publish(producer, topic, n)
    await producer.stop()
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    consumer = raw_consumer(url, topic, "earliest")
    await consumer.start()
    await raw_consume(consumer, handle)
    timing = watch.stop(handle.first)
    await consumer.stop()
    return timing


# ----------------------------------------------------------------------------- FastStream


def faststream_broker(url: str) -> Any:
    assert fs_kafka is not None
    return fs_kafka.KafkaBroker(
        bootstrap(url), enable_idempotence=True, linger_ms=LINGER_MS, logger=None
    )


def faststream_subscribe(broker: Any, topic: str, handle: Counter) -> None:
    @broker.subscriber(
        topic,
        group_id=GROUP,
        batch=True,
        max_records=FETCH,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
    )
    async def on_batch(messages: list[dict[str, Any]]) -> None:
        for message in messages:
            handle(message)


async def faststream_publish(broker: Any, topic: str, n: int) -> None:
    for first in range(0, n, WINDOW):
        count = min(WINDOW, n - first)  # (its publish_batch fills one 16 KiB batch buffer)
        await asyncio.gather(*[broker.publish(PAYLOAD, topic=topic) for _ in range(count)])


async def faststream_end_to_end(url: str, n: int, topic: str) -> Timing:
    await create_topic(url, topic)
    handle = Counter(n)
    broker = faststream_broker(url)
    faststream_subscribe(broker, topic, handle)
    await broker.start()
    await asyncio.sleep(1.0)  # joined (FastStream offers no signal for it)
    watch = Stopwatch()
    watch.start()
    await faststream_publish(broker, topic, n)
    await handle.done
    timing = watch.stop()
    await broker.stop()
    return timing


async def faststream_consume_only(url: str, n: int, topic: str) -> Timing:
    await create_topic(url, topic)
    filler = faststream_broker(url)
    await filler.connect()
    await faststream_publish(filler, topic, n)
    await filler.stop()
    handle = Counter(n)
    broker = faststream_broker(url)
    faststream_subscribe(broker, topic, handle)
    watch = Stopwatch()
    watch.start()
    await broker.start()
    await handle.done
    timing = watch.stop()
    await broker.stop()
    return timing


@contextlib.contextmanager
def kafka_url() -> Iterator[str]:
    external = os.environ.get("TROUPE_KAFKA_BOOTSTRAP")
    if external:
        yield f"kafka://{external}"
        return
    with KafkaServer() as server:
        yield server.url


ROWS = ("end_to_end", "consume_only")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], ROWS)
    n = 20_000 if args.quick else 100_000
    repeat = args.repeat or 3
    report = Report("brokers_kafka")
    if fs_kafka is None:
        print("note: faststream is not installed (pip install -e '.[dev]'); its column is skipped")
    with kafka_url() as url:
        if args.want("end_to_end"):
            sides = {"troupe": troupe_end_to_end, "aiokafka_raw": raw_end_to_end}
            if fs_kafka is not None:
                sides["faststream_batch"] = faststream_end_to_end
            add_row(report, "kafka_end_to_end", n, rounds(repeat, n, url, sides))
        if args.want("consume_only"):
            sides = {"troupe": troupe_consume_only, "aiokafka_raw": raw_consume_only}
            if fs_kafka is not None:
                sides["faststream_batch"] = faststream_consume_only
            add_row(report, "kafka_consume_only", n, rounds(repeat, n, url, sides))
    report.write(args.json)


if __name__ == "__main__":
    main()
