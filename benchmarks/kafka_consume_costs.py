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
- contract_hop: contract_inline with the cheapest per-message actor hop in
  between: each fetched page is appended to a plain deque that one loop callback
  drains a message at a time (the journal start, the handler, the clear, the
  offset kept), as ``actors.py``'s deque ceiling does: no mailbox bound,
  supervision, failure handling, retry, stats or backpressure. The floor of any
  design that hands each message to an actor with a mailbox of its own.
- contract_page_hop: the same, with each page one item of that deque (the callback
  walks a page's messages in order, one at a time): the floor of a mailbox that
  holds a page as one item.
- troupe: ``brokers_kafka.py``'s troupe side (``ConsumerBridge`` -> a counting
  actor, default settings): all of the above plus the actor delivery.

The row reports troupe against the others, and each contract side against
aiokafka_raw (``contract_inline_vs_raw``, ``contract_hop_vs_raw``,
``contract_page_hop_vs_raw``: the medians of the rounds' ratios). The script starts
its own Kafka node (``KafkaServer``), or uses ``TROUPE_KAFKA_BOOTSTRAP``.

    python benchmarks/kafka_consume_costs.py --quick --json benchmarks/results/costs.json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from collections import deque
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


#: One fetched record for a hop: (partition, offset, entry id, payload, headers).
Item = tuple[Any, int, str, Any, dict[str, str]]


class DequeHop:
    """contract_hop's target: a deque drained a message at a time by one loop callback,
    with the journal start and clear around the handler (see the docstring).
    ``pages``: a page is one item of the deque (contract_page_hop)."""

    def __init__(
        self, handler: Handler, journal: Journal, handled: dict[Any, int], *, pages: bool
    ) -> None:
        self.items: deque[Any] = deque()
        self.pages = pages
        self.handler = handler
        self.journal = journal
        self.handled = handled
        self.scheduled = False
        self.loop = asyncio.get_running_loop()

    def put_page(self, page: list[Item]) -> None:
        if self.pages:
            self.items.append(page)
        else:
            self.items.extend(page)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.drain_pages if self.pages else self.drain)

    def drain(self) -> None:
        self.scheduled = False
        items, handler, handled = self.items, self.handler, self.handled
        add, remove, receive = self.journal.add, self.journal.remove, handler.receive
        while items:
            tp, offset, entry, payload, headers = items.popleft()
            add(entry)
            handler.headers = headers
            receive(payload)
            remove(entry)
            handled[tp] = offset + 1

    def drain_pages(self) -> None:
        self.scheduled = False
        items, handler, handled = self.items, self.handler, self.handled
        add, remove, receive = self.journal.add, self.journal.remove, handler.receive
        while items:
            page: list[Item] = items.popleft()
            for _, _, entry, payload, headers in page:
                add(entry)
                handler.headers = headers
                receive(payload)
                remove(entry)
            if page:
                tp, offset = page[-1][0], page[-1][1]
                handled[tp] = offset + 1


async def drain_inline(
    url: str, topic: str, count: Counter, journal: Journal, *, hop: str | None = None
) -> None:
    """The contract's per-message work over a raw getmany loop (see the docstring);
    ``hop`` ("message" or "page"): each page handed to a :class:`DequeHop` that holds a
    message or a page per item, instead of handled in the loop."""
    loop = asyncio.get_running_loop()
    consumer = raw_consumer(url, topic, "earliest")
    await consumer.start()
    loads = JsonSerializer().loads
    handler = Handler(count)
    add, remove, receive = journal.add, journal.remove, handler.receive
    next_commit = loop.time() + COMMIT_EVERY
    handled: dict[Any, int] = {}  # per partition: the offset to commit (after the last handled)
    target = DequeHop(handler, journal, handled, pages=hop == "page") if hop else None
    while count.count < count.total:
        pages = await consumer.getmany(timeout_ms=500, max_records=FETCH)
        for tp, records in pages.items():
            partition = tp.partition
            page = []
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
                if target is not None:
                    page.append((tp, record.offset, entry, payload, headers))
                    continue
                add(entry)
                handler.headers = headers
                receive(payload)
                remove(entry)
            if target is not None:
                target.put_page(page)
            elif records:
                handled[tp] = records[-1].offset + 1
        if target is not None:
            await asyncio.sleep(0)  # the hop drains before the count is looked at
        if loop.time() >= next_commit:
            next_commit = loop.time() + COMMIT_EVERY
            await consumer.commit(dict(handled))
    await consumer.commit(dict(handled))
    await consumer.stop()


async def inline_consume_only(url: str, n: int, topic: str, *, hop: str | None = None) -> Timing:
    await fill_through_bridge(url, topic, n)
    count = Counter(n)
    with tempfile.TemporaryDirectory() as directory:
        journal = Journal.create(Path(directory), "inline")
        watch = Stopwatch()
        watch.start()
        await drain_inline(url, topic, count, journal, hop=hop)
        timing = watch.stop(count.first)
        journal.close()
    return timing


async def hop_consume_only(url: str, n: int, topic: str) -> Timing:
    return await inline_consume_only(url, n, topic, hop="message")


async def page_hop_consume_only(url: str, n: int, topic: str) -> Timing:
    return await inline_consume_only(url, n, topic, hop="page")


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
            "contract_hop": hop_consume_only,
            "contract_page_hop": page_hop_consume_only,
        }
        timings = rounds(repeat, n, url, sides)
        against_raw = {
            side: statistics.median(
                raw.seconds / own.seconds
                for own, raw in zip(timings[side], timings["aiokafka_raw"], strict=True)
            )
            for side in ("contract_inline", "contract_hop", "contract_page_hop")
        }
        add_row(
            report,
            "kafka_consume_only",
            n,
            timings,
            **{f"{side}_vs_raw": round(ratio, 3) for side, ratio in against_raw.items()},
        )
        for side, ratio in against_raw.items():
            print(f"  {side} / aiokafka_raw, median of {repeat} rounds: {ratio:.2f}x")
    report.write(args.json)


if __name__ == "__main__":
    main()
