"""Redis Streams through troupe's bridges vs a raw redis-py loop and FastStream's batch subscriber.

Questions: messages per second and client CPU per message, end to end (publish,
confirmed -> stream -> consumer group -> handler -> XACK) and consume only (a
pre-filled stream drained and acked). Sides (see ``_brokers_common``):

- troupe: ``ProducerBridge`` asks (100 in flight, each returns once stored) ->
  ``ConsumerBridge`` (default settings) -> a counting actor; JSON payloads.
- raw: redis-py with the same parser; publishes 100 JSON-encoded entries per
  pipelined round trip (XADD replies = stored), and consumes with
  ``XREADGROUP COUNT 100``, ``json.loads`` and the handler per entry, then one
  XACK for the page (ack after handling).
- faststream_batch: FastStream 0.7's Redis stream subscriber with ``batch=True``
  (``max_records=100``, a consumer group, acked after the handler returns, its
  default ack policy); publishes 100 entries per pipeline with FastStream's
  ``publish(..., pipeline=)``. Skipped with a note when FastStream is not installed.

Targets: troupe >= 0.8x raw, end to end and consume only; ahead of FastStream's batch
subscriber. The script starts its own redis-server on a free 127.0.0.1 port.

    python benchmarks/brokers_redis.py --quick --json benchmarks/results/brokers_redis.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio as aioredis
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

from troupe.brokers import connect
from troupe.brokers.servers import RedisServer

try:
    import faststream.redis as fs_redis
except ImportError:  # an optional peer
    fs_redis = None

GROUP = "bench"


def raw_client(url: str) -> aioredis.Redis:
    """A plain redis-py client speaking RESP2, as RedisBroker's does (one parser for both)."""
    return aioredis.Redis.from_url(url, protocol=2)


# ----------------------------------------------------------------------------- troupe


async def troupe_end_to_end(url: str, n: int, stream: str) -> Timing:
    return await bridges_end_to_end(connect(url), n, stream, GROUP)


async def troupe_consume_only(url: str, n: int, stream: str) -> Timing:
    return await bridges_consume_only(connect(url), n, stream, GROUP)


# ----------------------------------------------------------------------------- raw redis-py


async def raw_publish(client: aioredis.Redis, stream: str, n: int) -> None:
    for first in range(0, n, WINDOW):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(WINDOW, n - first)):
            pipe.xadd(stream, {b"b": json.dumps(PAYLOAD).encode()})
        await pipe.execute()


async def raw_consume(client: aioredis.Redis, stream: str, handle: Counter) -> None:
    while handle.count < handle.total:
        reply: Any = await client.xreadgroup(GROUP, "c", {stream: ">"}, count=FETCH, block=500)
        for _name, entries in reply or ():
            ids = []
            for entry_id, fields in entries:
                handle(json.loads(fields[b"b"]))
                ids.append(entry_id)
            await client.xack(stream, GROUP, *ids)


async def raw_end_to_end(url: str, n: int, stream: str) -> Timing:
    producer, consumer = raw_client(url), raw_client(url)
    await consumer.xgroup_create(stream, GROUP, id="0", mkstream=True)
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    await asyncio.gather(raw_publish(producer, stream, n), raw_consume(consumer, stream, handle))
    timing = watch.stop()
    await producer.aclose()
    await consumer.aclose()
    return timing


async def raw_consume_only(url: str, n: int, stream: str) -> Timing:
    client = raw_client(url)
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await raw_publish(client, stream, n)
    handle = Counter(n)
    watch = Stopwatch()
    watch.start()
    await raw_consume(client, stream, handle)
    timing = watch.stop()
    await client.aclose()
    return timing


# ----------------------------------------------------------------------------- FastStream


async def faststream_publish(broker: Any, stream: str, n: int) -> None:
    for first in range(0, n, WINDOW):
        async with broker._connection.pipeline() as pipe:  # as its Pipeline annotation does
            for _ in range(min(WINDOW, n - first)):
                await broker.publish(PAYLOAD, stream=stream, pipeline=pipe)
            await pipe.execute()


def faststream_broker(url: str, stream: str, handle: Counter) -> Any:
    assert fs_redis is not None
    broker = fs_redis.RedisBroker(url, logger=None)
    sub = fs_redis.StreamSub(stream, group=GROUP, consumer="c", batch=True, max_records=FETCH)

    @broker.subscriber(stream=sub)
    async def on_batch(messages: list[dict[str, Any]]) -> None:
        for message in messages:
            handle(message)

    return broker


async def faststream_end_to_end(url: str, n: int, stream: str) -> Timing:
    handle = Counter(n)
    broker = faststream_broker(url, stream, handle)
    await broker.start()
    watch = Stopwatch()
    watch.start()
    await faststream_publish(broker, stream, n)
    await handle.done
    timing = watch.stop()  # acked right after the handler of the last page returned
    await broker.stop()
    return timing


async def faststream_consume_only(url: str, n: int, stream: str) -> Timing:
    client = raw_client(url)
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await client.aclose()
    filler = fs_redis.RedisBroker(url, logger=None)  # type: ignore[union-attr]
    await filler.connect()
    await faststream_publish(filler, stream, n)
    await filler.stop()
    handle = Counter(n)
    broker = faststream_broker(url, stream, handle)
    watch = Stopwatch()
    watch.start()
    await broker.start()
    await handle.done
    timing = watch.stop()
    await broker.stop()
    return timing


ROWS = ("end_to_end", "consume_only")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], ROWS)
    n = 20_000 if args.quick else 100_000
    repeat = args.repeat or 3
    report = Report("brokers_redis")
    if fs_redis is None:
        print("note: faststream is not installed (pip install -e '.[dev]'); its column is skipped")
    with RedisServer() as server:
        if args.want("end_to_end"):
            sides = {"troupe": troupe_end_to_end, "redis_py_raw": raw_end_to_end}
            if fs_redis is not None:
                sides["faststream_batch"] = faststream_end_to_end
            add_row(report, "redis_end_to_end", n, rounds(repeat, n, server.url, sides))
        if args.want("consume_only"):
            sides = {"troupe": troupe_consume_only, "redis_py_raw": raw_consume_only}
            if fs_redis is not None:
                sides["faststream_batch"] = faststream_consume_only
            add_row(report, "redis_consume_only", n, rounds(repeat, n, server.url, sides))
    report.write(args.json)


if __name__ == "__main__":
    main()
