"""RabbitMQ bridge throughput: troupe end to end vs a raw pika loop with the same settings.

Question: how many 100-byte messages per second go publish (persistent, publisher
confirms, batches of 100 confirmed together) -> quorum queue -> consumer bridge
(prefetch = the target mailbox's capacity, 1000) -> actor -> manual ack, compared
with a hand-written pika loop doing the same on the same asyncio adapter (publish
100, wait for their confirms; consume with prefetch 1000, one ``multiple`` ack per
100 deliveries), back to back in the same run on the same node. Target: troupe
>= 0.7x raw (best rates; per-pair ratios and their median printed too).

It also measures the two ways pika can run, raw: ``AsyncioConnection`` on the
event loop (what troupe uses) against ``BlockingConnection`` in two threads (a
publisher thread and a consumer thread: what a thread actor per connection would
do at best, before any handoff to the event loop).

The script starts its own RabbitMQ node (Debian package rabbitmq-server).

    python benchmarks/brokers_rabbitmq.py --quick --json benchmarks/results/brokers_rabbitmq.json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika
from _brokers_common import Sink
from _common import Report, parse_args
from pika.adapters.asyncio_connection import AsyncioConnection

import troupe
from troupe import ActorSystem
from troupe.brokers import BYTES, ConsumerBridge, connect
from troupe.brokers.servers.rabbitmq import RabbitServer

PAYLOAD = b"x" * 100
BATCH = 100
PREFETCH = 1000  # the default mailbox capacity, which the bridge uses as prefetch
QUEUE_ARGS = {"x-queue-type": "quorum"}


async def troupe_run(url: str, n: int, queue: str) -> float:
    """Seconds for n messages: publish with confirms, bridge into an actor, ack all."""
    broker = connect(url)
    await broker.ensure_group(queue, "bench")
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    async with ActorSystem("bench") as system:
        sink = system.spawn(Sink, n, done)
        system.spawn(
            ConsumerBridge, broker, queue, "bench", sink, consumer="c", serializer=BYTES,
            batch=BATCH, block=0.05,
        )  # fmt: skip
        stats = broker.stats.consumer(queue, "bench", "c")
        start = time.perf_counter()
        for first in range(0, n, BATCH):
            count = min(BATCH, n - first)
            await broker.publish_messages(queue, [broker.message(PAYLOAD) for _ in range(count)])
        await done
        while stats.acked < n:  # noqa: ASYNC110 - the last acks are in flight
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
    await broker.close()
    return elapsed


async def raw_run(url: str, n: int, queue: str) -> float:
    """The same by hand with pika's AsyncioConnection (callbacks on this loop)."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[Any] = loop.create_future()
    conn = AsyncioConnection(
        pika.URLParameters(url),
        on_open_callback=opened.set_result,
        on_open_error_callback=lambda _, exc: opened.set_exception(exc),
        custom_ioloop=loop,
    )
    await opened

    async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        fn(*args, callback=future.set_result, **kwargs)
        return await future

    async def channel() -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        conn.channel(on_open_callback=future.set_result)
        return await future

    pub, con = await channel(), await channel()
    await call(pub.queue_declare, queue, durable=True, arguments=QUEUE_ARGS)
    state = {"confirmed": 0, "want": 0}
    batch_done: list[asyncio.Future[None]] = []

    def on_confirm(frame: Any) -> None:
        tag = frame.method.delivery_tag
        state["confirmed"] = max(state["confirmed"], tag)
        if state["confirmed"] >= state["want"] and batch_done and not batch_done[0].done():
            batch_done[0].set_result(None)

    await call(pub.confirm_delivery, on_confirm)
    done: asyncio.Future[None] = loop.create_future()
    handled = 0

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal handled
        handled += 1
        if handled % BATCH == 0 or handled == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if handled == n:
            done.set_result(None)

    await call(con.basic_qos, prefetch_count=PREFETCH)
    await call(con.basic_consume, queue, on_message)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")
    start = time.perf_counter()
    sent = 0
    while sent < n:
        count = min(BATCH, n - sent)
        for _ in range(count):
            pub.basic_publish("", queue, PAYLOAD, props)
        sent += count
        state["want"] = sent
        batch_done[:] = [loop.create_future()]
        if state["confirmed"] < sent:
            await batch_done[0]
    await done
    elapsed = time.perf_counter() - start
    closed: asyncio.Future[Any] = loop.create_future()
    conn.add_on_close_callback(lambda *_: closed.done() or closed.set_result(None))
    conn.close()
    await closed
    return elapsed


def blocking_run(url: str, n: int, queue: str) -> float:
    """The same with BlockingConnection: a publisher thread and a consumer thread."""
    setup = pika.BlockingConnection(pika.URLParameters(url))
    setup.channel().queue_declare(queue, durable=True, arguments=QUEUE_ARGS)
    setup.close()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")

    def publish() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        ch.confirm_delivery()  # BlockingChannel waits for each confirm: no pipelining
        for _ in range(n):
            ch.basic_publish("", queue, PAYLOAD, props)
        conn.close()

    def consume() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=PREFETCH)
        for handled, (method, _, _) in enumerate(ch.consume(queue), 1):
            if handled % BATCH == 0 or handled == n:
                ch.basic_ack(method.delivery_tag, multiple=True)
            if handled == n:
                break
        ch.cancel()
        conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=publish), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def rate(n: int, fn: Any, url: str) -> float:
    queue = f"bench-{fn.__name__}-{time.time_ns()}"
    if asyncio.iscoroutinefunction(fn):
        return n / troupe.run(fn(url, n, queue))
    return n / float(fn(url, n, queue))


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 10_000 if args.quick else 50_000
    repeat = args.repeat or (3 if args.quick else 5)
    report = Report("brokers_rabbitmq")
    with RabbitServer() as server:
        print(f"rabbitmq node up in {server.startup_seconds:.1f} s")
        raw: list[float] = []
        ours: list[float] = []
        blocking: list[float] = []
        for _ in range(repeat):  # interleaved, so all see the same machine load
            raw.append(rate(n, raw_run, server.url))
            ours.append(rate(n, troupe_run, server.url))
            blocking.append(rate(n, blocking_run, server.url))
        pairs = [round(t / r, 3) for t, r in zip(ours, raw, strict=True)]
        report.add(
            "rabbitmq_end_to_end",
            "msg/s",
            max(ours),
            {"pika_asyncio_raw_loop": max(raw)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            batch=BATCH,
            prefetch=PREFETCH,
            queue_type="quorum",
            target_ratio=0.7,
            ratio=max(ours) / max(raw),
            paired_ratios=pairs,
            median_paired_ratio=statistics.median(pairs),
        )
        report.add(
            "pika_adapter_choice",
            "msg/s",
            max(raw),
            {"pika_blocking_two_threads": max(blocking)},
            note="raw loops: AsyncioConnection on the loop (troupe's choice) vs "
            "BlockingConnection per thread",
        )
        print(f"rabbitmq end to end, troupe/raw per back-to-back pair: {pairs}")
    report.write(args.json)


if __name__ == "__main__":
    main()
