"""Where Kafka consume-only time goes: raw aiokafka, the delivery contract inline, troupe.

Question: of the gap between troupe's ``ConsumerBridge`` and a raw aiokafka loop
draining a pre-filled topic (``brokers_kafka.py``'s consume-only row), how much is
the delivery contract's own per-message work, and how much is troupe delivering
each message to an actor? Every side drains a 6-partition topic as a new consumer
group, timed from creating the consumer until its last commit returned:

- aiokafka_raw: ``brokers_kafka.py``'s raw side (records published by a raw
  producer): ``getmany(max_records=100)``, ``json.loads`` and the handler per
  record, a commit every 0.1 s and a last one at the end.
- contract_inline: the same loop over records published through a
  ``ProducerBridge`` (troupe's headers on every record), doing inline, with no
  actor runtime, the least the delivery contract asks per message: the record's
  headers decoded (the message id taken out), its entry id, its start counted in
  troupe's attempts journal (``troupe.brokers.attempts.Journal.add``: an mmap
  write that survives kill -9) before the handler and cleared after it returned
  (``Journal.remove``), the payload decoded with troupe's ``JsonSerializer``, the
  handler called with the delivery's headers set, the offset kept until the commit.
  No retry, dead-letter queue, backpressure, supervision or stats.
- troupe: ``brokers_kafka.py``'s troupe side (``ConsumerBridge`` -> a counting
  actor, default settings): all of the above plus the actor delivery.

The row reports troupe against both others, and contract_inline against
aiokafka_raw (``contract_inline_vs_raw``, the median of the rounds' ratios). The
script starts its own Kafka node (``KafkaServer``), or uses ``TROUPE_KAFKA_BOOTSTRAP``.

    python benchmarks/kafka_consume_costs.py --quick --json benchmarks/results/costs.json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _brokers_common import FETCH, Counter, Stopwatch, Timing, add_row, ask_all, rounds
from _common import Report, parse_args
from brokers_kafka import (
    COMMIT_EVERY,
    PARTITIONS,
    create_topic,
    kafka_url,
    raw_consume_only,
    raw_consumer,
    troupe_consume_only,
)

from troupe import ActorSystem
from troupe.brokers import ProducerBridge, connect
from troupe.brokers.attempts import Journal
from troupe.brokers.kafka.wire import ID_HEADER
from troupe.brokers.message import JsonSerializer


class Handler:
    """The inline side's handler: sees each payload with its delivery's headers set."""

    def __init__(self, count: Counter) -> None:
        self.count = count
        self.headers: dict[str, str] = {}

    def receive(self, payload: Any) -> None:
        self.count(payload)


async def fill_through_bridge(url: str, topic: str, n: int) -> None:
    """``n`` messages published through a ProducerBridge (as troupe's side fills)."""
    await create_topic(url, topic)
    broker = connect(url, partitions=PARTITIONS)
    async with ActorSystem("fill") as system:
        await ask_all(system.spawn(ProducerBridge, broker, topic), n)
    await broker.close()


async def drain_inline(url: str, topic: str, count: Counter, journal: Journal) -> None:
    """The contract's per-message work over a raw getmany loop (see the docstring)."""
    loop = asyncio.get_running_loop()
    consumer = raw_consumer(url, topic, "earliest")
    await consumer.start()
    loads = JsonSerializer().loads
    handler = Handler(count)
    add, remove, receive = journal.add, journal.remove, handler.receive
    next_commit = loop.time() + COMMIT_EVERY
    handled: dict[Any, int] = {}  # per partition: the offset to commit (after the last handled)
    while count.count < count.total:
        pages = await consumer.getmany(timeout_ms=500, max_records=FETCH)
        for tp, records in pages.items():
            partition = tp.partition
            for record in records:
                headers = {}
                message_id = None
                for name, data in record.headers:
                    if name == ID_HEADER:
                        message_id = data.decode()
                    else:
                        headers[name] = data.decode()
                entry = f"{partition}:{record.offset}"
                headers["troupe-message-id"] = message_id or entry
                headers["troupe-entry-id"] = entry
                payload = loads(record.value)
                add(entry)
                handler.headers = headers
                receive(payload)
                remove(entry)
            if records:
                handled[tp] = records[-1].offset + 1
        if loop.time() >= next_commit:
            next_commit = loop.time() + COMMIT_EVERY
            await consumer.commit(dict(handled))
    await consumer.commit(dict(handled))
    await consumer.stop()


async def inline_consume_only(url: str, n: int, topic: str) -> Timing:
    await fill_through_bridge(url, topic, n)
    count = Counter(n)
    with tempfile.TemporaryDirectory() as directory:
        journal = Journal.create(Path(directory), "inline")
        watch = Stopwatch()
        watch.start()
        await drain_inline(url, topic, count, journal)
        timing = watch.stop(count.first)
        journal.close()
    return timing


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 20_000 if args.quick else 100_000
    repeat = args.repeat or 3
    report = Report("kafka_consume_costs")
    with kafka_url() as url:
        sides = {
            "troupe": troupe_consume_only,
            "aiokafka_raw": raw_consume_only,
            "contract_inline": inline_consume_only,
        }
        timings = rounds(repeat, n, url, sides)
        inline = statistics.median(
            raw.seconds / own.seconds
            for own, raw in zip(timings["contract_inline"], timings["aiokafka_raw"], strict=True)
        )
        add_row(report, "kafka_consume_only", n, timings, contract_inline_vs_raw=round(inline, 3))
        print(f"  contract_inline / aiokafka_raw, median of {repeat} rounds: {inline:.2f}x")
    report.write(args.json)


if __name__ == "__main__":
    main()
