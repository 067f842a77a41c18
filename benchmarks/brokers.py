"""Broker bridge throughput: Redis Streams end to end, troupe vs a raw redis-py loop.

Question: how many 100-byte messages per second go publish -> consumer bridge ->
actor -> XACK on Redis Streams, compared with a hand-written redis-py loop
(pipelined XADD, XREADGROUP COUNT 100, one XACK per batch) in the same run on
the same server; the same for consuming a published backlog alone; the
in-memory broker's rate through the same bridge; and the ProducerBridge's
publish rate (batched, stored once per batch by a Lua script) against pipelined
XADD batches. Both sides use batches of 100 and streams of the same length;
each side runs once to warm up, then (troupe, raw) pairs run back to back, the
order within a pair alternating. Target: Redis end to end >= 0.8x the raw loop,
judged on the median of the per-pair ratios (on a shared machine the load
moves between runs); the ratio of the best rates is printed too, and so is the
client CPU time per message in this process (least and median), which other
processes' load hardly moves. troupe's ``publish_messages`` stores a batch with
one Lua script (one command to pack, one reply to read), the raw loop with a
pipeline of XADDs, as a hand-written client would.

Both sides use the same redis-py in the same process, so the same reply parser:
hiredis when it is installed (the ``redis`` extra pulls it). The parser in use
is printed and written to the JSON (``reply_parser``, ``hiredis``).

The script starts its own redis-server (Debian package redis-server) on a free
127.0.0.1 port.

    python benchmarks/brokers.py --quick --json benchmarks/results/brokers.json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio as aioredis
import redis.utils
from _brokers_common import Sink, paired, time_producer_bridge
from _common import Report, parse_args

import troupe
from troupe import ActorSystem
from troupe.brokers import BYTES, Broker, ConsumerBridge, connect
from troupe.brokers.redis.broker import RedisBroker
from troupe.brokers.servers import RedisServer

PAYLOAD = b"x" * 100
BATCH = 100


def raw_client(url: str) -> aioredis.Redis:
    """A plain redis-py client speaking RESP2 as RedisBroker's does, so both use one parser."""
    return aioredis.Redis.from_url(url, protocol=2)


async def _publish(broker: Broker, stream: str, n: int) -> None:
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        await broker.publish_messages(stream, [broker.message(PAYLOAD) for _ in range(count)])


async def troupe_run(url: str, n: int, stream: str) -> float:
    """Seconds for n messages: publish, consume through a bridge into an actor, ack all."""
    broker = connect(url)
    await broker.connect()
    await broker.ensure_group(stream, "bench")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    async with ActorSystem("bench") as system:
        sink = system.spawn(Sink, n, done)
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            "bench",
            sink,
            consumer="c",
            serializer=BYTES,
            batch=BATCH,
            block=0.05,
        )
        stats = broker.stats.consumer(stream, "bench", "c")
        start = time.perf_counter()
        await _publish(broker, stream, n)
        await done
        while stats.acked < n:  # the last acks are in flight  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
    await broker.close()
    return elapsed


async def raw_run(url: str, n: int, stream: str) -> float:
    """The same flow by hand with redis-py: pipelined XADD, XREADGROUP COUNT 100, XACK."""
    producer = raw_client(url)
    consumer = raw_client(url)
    await consumer.xgroup_create(stream, "bench", id="0", mkstream=True)
    handled = 0

    def handle(body: bytes) -> None:
        nonlocal handled
        handled += 1

    async def publish() -> None:
        for start in range(0, n, BATCH):
            pipe = producer.pipeline(transaction=False)
            for _ in range(min(BATCH, n - start)):
                pipe.xadd(stream, {b"b": PAYLOAD})
            await pipe.execute()

    async def consume() -> None:
        acked = 0
        while acked < n:
            reply: Any = await consumer.xreadgroup(
                "bench", "c", {stream: ">"}, count=BATCH, block=50
            )
            for _name, entries in reply or ():
                ids = []
                for entry_id, fields in entries:
                    handle(fields[b"b"])
                    ids.append(entry_id)
                pipe = consumer.pipeline(transaction=False)
                pipe.xack(stream, "bench", *ids)
                await pipe.execute()
                acked += len(ids)

    start = time.perf_counter()
    await asyncio.gather(publish(), consume())
    elapsed = time.perf_counter() - start
    assert handled == n
    await producer.aclose()
    await consumer.aclose()
    return elapsed


async def troupe_consume_run(url: str, n: int, stream: str) -> float:
    """Seconds for a backlog of n messages through a bridge into an actor, all acked."""
    broker = connect(url)
    await broker.connect()
    await broker.ensure_group(stream, "bench")
    await _publish(broker, stream, n)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    async with ActorSystem("bench") as system:
        cpu = time.process_time()
        start = time.perf_counter()
        sink = system.spawn(Sink, n, done)
        system.spawn(
            ConsumerBridge,
            broker,
            stream,
            "bench",
            sink,
            consumer="c",
            serializer=BYTES,
            batch=BATCH,
            block=0.05,
        )
        stats = broker.stats.consumer(stream, "bench", "c")
        await done
        while stats.acked < n:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
        TIMED_CPU.append(time.process_time() - cpu)
    await broker.close()
    return elapsed


async def raw_consume_run(url: str, n: int, stream: str) -> float:
    """The same backlog by hand: XREADGROUP COUNT 100, one XACK per batch."""
    client = raw_client(url)
    await client.xgroup_create(stream, "bench", id="0", mkstream=True)
    for first in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, n - first)):
            pipe.xadd(stream, {b"b": PAYLOAD})
        await pipe.execute()
    handled = 0
    cpu = time.process_time()
    start = time.perf_counter()
    while handled < n:
        reply: Any = await client.xreadgroup("bench", "c", {stream: ">"}, count=BATCH, block=50)
        for _name, entries in reply or ():
            ids = []
            for entry_id, fields in entries:
                fields[b"b"]
                handled += 1
                ids.append(entry_id)
            pipe = client.pipeline(transaction=False)
            pipe.xack(stream, "bench", *ids)
            await pipe.execute()
    elapsed = time.perf_counter() - start
    TIMED_CPU.append(time.process_time() - cpu)
    await client.aclose()
    return elapsed


async def producer_run(url: str, n: int, stream: str) -> float:
    """Seconds for n told messages through a ProducerBridge until the broker confirmed all."""
    broker = connect(url)
    await broker.connect()
    elapsed = await time_producer_bridge(broker, stream, n, PAYLOAD, BATCH)
    await broker.close()
    return elapsed


async def raw_publish_run(url: str, n: int, stream: str) -> float:
    """The same by hand: pipelined XADD, BATCH entries per round trip."""
    client = raw_client(url)
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, n - first)):
            pipe.xadd(stream, {b"b": PAYLOAD})
        await pipe.execute()
    elapsed = time.perf_counter() - start
    await client.aclose()
    return elapsed


async def reply_parsers(url: str) -> tuple[str, str]:
    """The reply parser class of a raw redis-py client and of troupe's RedisBroker."""
    raw = raw_client(url)
    broker = connect(url)
    assert isinstance(broker, RedisBroker)
    names = []
    for client in (raw, broker.client):
        await client.ping()
        connection: Any = await client.connection_pool.get_connection()
        names.append(type(connection._parser).__name__)
        await client.connection_pool.release(connection)
    await raw.aclose()
    await broker.close()
    return names[0], names[1]


CPU: dict[str, list[float]] = {}  # run function name -> this process's CPU seconds per message
TIMED_CPU: list[float] = []  # CPU seconds of a run's timed part, for runs that set up first


def best(runs: int, n: int, fn: Any, *args: Any) -> float:
    """The best rate of ``runs`` runs; each run's CPU time per message goes to ``CPU``."""
    rates = []
    for i in range(runs):
        TIMED_CPU.clear()
        cpu = time.process_time()
        seconds = troupe.run(fn(*args, n, f"bench-{fn.__name__}-{i}-{time.time_ns()}"))
        cpu = TIMED_CPU[0] if TIMED_CPU else time.process_time() - cpu
        CPU.setdefault(fn.__name__, []).append(cpu / n)
        rates.append(n / seconds)
    return max(rates)


def pairs(repeat: int, n: int, troupe_fn: Any, raw_fn: Any, url: str) -> tuple[list[float], ...]:
    """Rates of ``repeat`` back-to-back (troupe, raw) pairs after one warm-up run of each;
    the order within a pair alternates, so a drift of the machine's load favours neither."""
    troupe.run(troupe_fn(url, min(n, 2_000), f"warm-{troupe_fn.__name__}-{time.time_ns()}"))
    troupe.run(raw_fn(url, min(n, 2_000), f"warm-{raw_fn.__name__}-{time.time_ns()}"))
    troupe_rates: list[float] = []
    raw_rates: list[float] = []
    for i in range(repeat):
        if i % 2:
            troupe_rates.append(best(1, n, troupe_fn, url))
            raw_rates.append(best(1, n, raw_fn, url))
        else:
            raw_rates.append(best(1, n, raw_fn, url))
            troupe_rates.append(best(1, n, troupe_fn, url))
    return troupe_rates, raw_rates


def cpu_us(fn: Any) -> float:
    """The least CPU microseconds per message ``fn``'s runs took in this process."""
    return round(min(CPU[fn.__name__]) * 1e6, 2)


def cpu_median_us(fn: Any) -> float:
    """The median CPU microseconds per message of ``fn``'s runs in this process."""
    return round(statistics.median(CPU[fn.__name__]) * 1e6, 2)


def main() -> None:
    args = parse_args(__doc__ or "")
    quick = args.quick
    n = 20_000 if quick else 100_000
    repeat = args.repeat or 5
    report = Report("brokers")
    hiredis = bool(redis.utils.HIREDIS_AVAILABLE)
    with RedisServer() as server:
        raw_parser, troupe_parser = troupe.run(reply_parsers(server.url))
        assert raw_parser == troupe_parser, (raw_parser, troupe_parser)
        print(f"redis reply parser: {troupe_parser} (hiredis {'on' if hiredis else 'off'})")
        troupe_rates, raw_rates = pairs(repeat, n, troupe_run, raw_run, server.url)
        e2e = paired(troupe_rates, raw_rates)
        report.add(
            "redis_streams_end_to_end",
            "msg/s",
            max(troupe_rates),
            {"redis_py_raw_loop": max(raw_rates)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            target_ratio=0.8,
            ratio=max(troupe_rates) / max(raw_rates),
            paired_ratios=e2e,
            median_paired_ratio=statistics.median(e2e),
            cpu_us_per_msg={"troupe": cpu_us(troupe_run), "raw": cpu_us(raw_run)},
            cpu_us_per_msg_median={
                "troupe": cpu_median_us(troupe_run),
                "raw": cpu_median_us(raw_run),
            },
            reply_parser=troupe_parser,
            hiredis=hiredis,
        )
        consume, raw_consume = pairs(repeat, n, troupe_consume_run, raw_consume_run, server.url)
        report.add(
            "redis_consume_backlog",
            "msg/s",
            max(consume),
            {"redis_py_xreadgroup_xack": max(raw_consume)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            ratio=max(consume) / max(raw_consume),
            median_paired_ratio=statistics.median(paired(consume, raw_consume)),
            cpu_us_per_msg={
                "troupe": cpu_us(troupe_consume_run),
                "raw": cpu_us(raw_consume_run),
            },
            reply_parser=troupe_parser,
            hiredis=hiredis,
        )
        bridge_publish, raw_publish = pairs(repeat, n, producer_run, raw_publish_run, server.url)
        report.add(
            "redis_producer_bridge",
            "msg/s",
            max(bridge_publish),
            {"redis_py_pipelined_xadd": max(raw_publish)},
            payload_bytes=len(PAYLOAD),
            messages=n,
            batch=BATCH,
            ratio=max(bridge_publish) / max(raw_publish),
            median_paired_ratio=statistics.median(paired(bridge_publish, raw_publish)),
            cpu_us_per_msg={"troupe": cpu_us(producer_run), "raw": cpu_us(raw_publish_run)},
            reply_parser=troupe_parser,
            hiredis=hiredis,
        )
        print(
            f"redis end to end, troupe/raw per back-to-back pair: {e2e} "
            f"(median {statistics.median(e2e):.2f})"
        )
        print(
            f"client CPU per message (us, least / median): end to end troupe "
            f"{cpu_us(troupe_run)} / {cpu_median_us(troupe_run)}, raw {cpu_us(raw_run)} / "
            f"{cpu_median_us(raw_run)}; consume troupe {cpu_us(troupe_consume_run)}, raw "
            f"{cpu_us(raw_consume_run)}; publish bridge {cpu_us(producer_run)}, raw "
            f"{cpu_us(raw_publish_run)}"
        )
    memory_rate = best(repeat, n, troupe_run, "memory://")
    report.add(
        "memory_broker_end_to_end",
        "msg/s",
        memory_rate,
        {},
        payload_bytes=len(PAYLOAD),
        messages=n,
    )
    report.write(args.json)


if __name__ == "__main__":
    main()
