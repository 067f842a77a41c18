"""RabbitMQ through troupe's bridges vs a raw pika loop with the same settings.

Questions: messages per second and client CPU per message, end to end (persistent
publish with publisher confirms -> quorum queue -> consumer -> handler -> manual
ack) and consume only (a pre-filled queue drained and acked). Sides (see
``_brokers_common``):

- troupe: ``ProducerBridge`` asks (100 in flight, each returns once confirmed) ->
  ``ConsumerBridge`` (default settings: prefetch = the target mailbox's capacity,
  1000) -> a counting actor; JSON payloads.
- raw: pika's ``AsyncioConnection`` on the same loop (what troupe uses): publish
  100 JSON-encoded persistent messages, wait for their confirms; consume with
  prefetch 1000, ``json.loads`` and the handler per delivery, one ``multiple``
  ack per 100 handled (ack after handling).

Target: troupe >= 0.8x raw, end to end and consume only. The script starts its
own RabbitMQ node (Debian package rabbitmq-server).

    python benchmarks/brokers_rabbitmq.py --quick --json benchmarks/results/brokers_rabbitmq.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika
from _brokers_common import (
    FETCH,
    PAYLOAD,
    WINDOW,
    Counter,
    Side,
    Stopwatch,
    Timing,
    add_row,
    bridges_consume_only,
    bridges_end_to_end,
    rounds,
)
from _common import Report, parse_args
from pika.adapters.asyncio_connection import AsyncioConnection

from troupe.brokers import connect
from troupe.brokers.servers import RabbitServer

GROUP = "bench"
PREFETCH = 1000  # the default mailbox capacity, which the bridge uses as prefetch
QUEUE_ARGS = {"x-queue-type": "quorum"}  # troupe's default queue kind


# ----------------------------------------------------------------------------- troupe


async def troupe_end_to_end(url: str, n: int, queue: str) -> Timing:
    return await bridges_end_to_end(connect(url), n, queue, GROUP)


async def troupe_consume_only(url: str, n: int, queue: str) -> Timing:
    return await bridges_consume_only(connect(url), n, queue, GROUP)


# ----------------------------------------------------------------------------- raw pika


class RawPika:
    """pika's AsyncioConnection on the running loop, with awaitable calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.get_running_loop()

    async def open(self) -> None:
        opened: asyncio.Future[Any] = self.loop.create_future()
        self.conn = AsyncioConnection(
            pika.URLParameters(self.url),
            on_open_callback=opened.set_result,
            on_open_error_callback=lambda _, exc: opened.set_exception(exc),
            custom_ioloop=self.loop,
        )
        await opened

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        fn(*args, callback=future.set_result, **kwargs)
        return await future

    async def channel(self) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        self.conn.channel(on_open_callback=future.set_result)
        return await future

    async def publisher(self, queue: str) -> Any:
        """A channel in confirm mode; ``publish(n)`` sends n, returns once all confirmed."""
        channel = await self.channel()
        await self.call(channel.queue_declare, queue, durable=True, arguments=QUEUE_ARGS)
        confirmed = [0]
        waiting: list[tuple[int, asyncio.Future[None]]] = []

        def on_confirm(frame: Any) -> None:
            confirmed[0] = max(confirmed[0], frame.method.delivery_tag)
            while waiting and waiting[0][0] <= confirmed[0]:
                waiting.pop(0)[1].set_result(None)

        await self.call(channel.confirm_delivery, on_confirm)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
        sent = [0]

        async def publish(n: int) -> None:
            for first in range(0, n, WINDOW):
                count = min(WINDOW, n - first)
                for _ in range(count):
                    channel.basic_publish("", queue, json.dumps(PAYLOAD).encode(), props)
                sent[0] += count
                if confirmed[0] < sent[0]:
                    future = self.loop.create_future()
                    waiting.append((sent[0], future))
                    await future

        return publish

    async def consume(self, queue: str, handle: Counter) -> None:
        channel = await self.channel()
        handled = [0]

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            handle(json.loads(body))
            handled[0] += 1
            if handled[0] % FETCH == 0 or handle.count == handle.total:
                ch.basic_ack(method.delivery_tag, multiple=True)

        await self.call(channel.basic_qos, prefetch_count=PREFETCH)
        await self.call(channel.basic_consume, queue, on_message)

    async def close(self) -> None:
        closed: asyncio.Future[Any] = self.loop.create_future()
        self.conn.add_on_close_callback(lambda *_: closed.done() or closed.set_result(None))
        self.conn.close()
        await closed


async def raw_end_to_end(url: str, n: int, queue: str) -> Timing:
    client = RawPika(url)
    await client.open()
    publish = await client.publisher(queue)
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    await client.consume(queue, handle)
    await publish(n)
    await handle.done
    timing = watch.stop()
    await client.close()
    return timing


async def raw_consume_only(url: str, n: int, queue: str) -> Timing:
    client = RawPika(url)
    await client.open()
    publish = await client.publisher(queue)
    await publish(n)
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    await client.consume(queue, handle)
    await handle.done
    timing = watch.stop()
    await client.close()
    return timing


async def delete_queues(url: str, queue: str) -> None:
    """Delete a side's queue (and troupe's DLQ of it) once it was timed: the next rounds
    run on a node that is not still keeping earlier rounds' quorum queues."""
    client = RawPika(url)
    await client.open()
    channel = await client.channel()
    for name in (queue, f"{queue}:dlq"):
        await client.call(channel.queue_delete, name)
    await client.close()


def deleting(side: Side) -> Side:
    """``side``, then its queues deleted (not timed)."""

    async def run(url: str, n: int, queue: str) -> Timing:
        timing = await side(url, n, queue)
        await delete_queues(url, queue)
        return timing

    return run


ROWS = ("end_to_end", "consume_only")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], ROWS)
    n = 10_000 if args.quick else 50_000
    repeat = args.repeat or 3
    report = Report("brokers_rabbitmq")
    with RabbitServer() as server:
        print(f"rabbitmq node up in {server.startup_seconds:.1f} s")
        if args.want("end_to_end"):
            sides = {"troupe": deleting(troupe_end_to_end), "pika_raw": deleting(raw_end_to_end)}
            add_row(report, "rabbitmq_end_to_end", n, rounds(repeat, n, server.url, sides))
        if args.want("consume_only"):
            sides = {
                "troupe": deleting(troupe_consume_only),
                "pika_raw": deleting(raw_consume_only),
            }
            add_row(report, "rabbitmq_consume_only", n, rounds(repeat, n, server.url, sides))
    report.write(args.json)


if __name__ == "__main__":
    main()
