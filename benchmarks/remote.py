"""Remote actors: ask round trips and told messages per second through each broker,
troupe's remote refs vs the raw client doing the same by hand, in the same run.

Question: what does a remote ref cost over the broker's own client? For each of
Redis, RabbitMQ and Kafka (servers this script starts) and the in-memory broker:

- **asks**: ``ASKS`` round trips with ``CONCURRENCY`` outstanding, from a client
  system to an echo actor exported by a server system (two systems, two broker
  connections, one process). The raw peer does the same request/reply by hand:
  the client sends each request with a correlation id and its reply address, a
  server loop answers it to that address, a reader matches replies to futures
  (Redis: XADD / XREAD on a request and a reply stream; RabbitMQ: a request queue
  and an exclusive reply queue, auto ack, pika's AsyncioConnection; Kafka: a
  request and a reply topic, aiokafka).
- **tells**: ``TELLS`` 100-byte messages told to the remote ref until the exported
  actor handled them all (producer bridge -> stream -> consumer bridge, acked after
  the handler). The raw peer publishes and consumes the same by hand, batches of 100,
  acked after handling (Redis: pipelined XADD, XREADGROUP, XACK; RabbitMQ: a quorum
  queue, publisher confirms, prefetch 1000; Kafka: acks=all, a group consumer).

Each side runs once to warm up, then (troupe, raw) pairs run back to back with the
order alternating; the result is the median of the per-pair ratios (target >= 0.8).

    python benchmarks/remote.py --quick --json benchmarks/results/remote.json
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika
import redis.asyncio as aioredis
from _common import Report, parse_args
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pika.adapters.asyncio_connection import AsyncioConnection

import troupe
from troupe import Actor, ActorSystem
from troupe.actors import export, remote, remote_node
from troupe.brokers import Broker, connect
from troupe.brokers.servers import KafkaServer, RabbitServer, RedisServer

CONCURRENCY = 16
BATCH = 100
PAYLOAD = "x" * 100
ROWS = ("memory", "redis", "rabbitmq", "kafka")
Run = Callable[[str, int], Awaitable[float]]  # (url, count) -> seconds


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Counter(Actor):
    def __init__(
        self, total: int, first: asyncio.Future[None], done: asyncio.Future[float]
    ) -> None:
        self.total = total
        self.count = 0
        self.first = first
        self.done = done

    def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.first.set_result(None)
        if self.count == self.total:
            self.done.set_result(time.perf_counter())


async def concurrently(n: int, ask: Callable[[int], Awaitable[Any]]) -> float:
    """Seconds for ``n`` calls of ``ask`` with CONCURRENCY in flight."""

    async def worker(first: int) -> None:
        for i in range(first, n, CONCURRENCY):
            await ask(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    return time.perf_counter() - start


def brokers_for(url: str, shared: Broker | None) -> tuple[Broker, Broker]:
    if shared is not None:  # memory: one broker object is the "server"
        return shared, shared
    return connect(url), connect(url)


async def troupe_asks(url: str, n: int, memory: Broker | None = None) -> float:
    server_broker, client_broker = brokers_for(url, memory)
    name = f"echo.{uuid.uuid4().hex[:8]}"
    async with ActorSystem("server") as server, ActorSystem("client") as client:
        await export(server, server.spawn(Echo), name, via=server_broker)
        ref = remote(client, name, via=client_broker)
        while not remote_node(client, client_broker).view(name).live():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        elapsed = await concurrently(n, lambda i: ref.ask({"i": i, "p": PAYLOAD}))
    if memory is None:
        await server_broker.close()
        await client_broker.close()
    return elapsed


async def troupe_tells(url: str, n: int, memory: Broker | None = None) -> float:
    server_broker, client_broker = brokers_for(url, memory)
    name = f"sink.{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    done: asyncio.Future[float] = loop.create_future()
    async with ActorSystem("server") as server, ActorSystem("client") as client:
        counter = server.spawn(Counter, n, first, done)
        await export(server, counter, name, via=server_broker, batch=100)
        ref = remote(client, name, via=client_broker)
        await ref.tell("warm-up")  # counted: n - 1 more are timed, once it arrived
        await first
        start = time.perf_counter()
        for _ in range(n - 1):
            await ref.tell(PAYLOAD)
        finished = await done
    if memory is None:
        await server_broker.close()
        await client_broker.close()
    return finished - start


# -- raw request/reply by hand ---------------------------------------------------------------


async def redis_raw_asks(url: str, n: int) -> float:
    """XADD requests (correlation id, reply stream) / a server XREAD loop XADDs replies."""
    tag = uuid.uuid4().hex[:8]
    requests, replies = f"raw.req.{tag}", f"raw.rep.{tag}"
    server, client, reader = (aioredis.Redis.from_url(url) for _ in range(3))
    waiting: dict[bytes, asyncio.Future[bytes]] = {}
    stop = False

    async def serve() -> None:
        last = "$"
        while not stop:
            found = await server.xread({requests: last}, count=1000, block=100)
            for _stream, entries in found or ():
                pipe = server.pipeline(transaction=False)
                for entry_id, fields in entries:
                    last = entry_id
                    pipe.xadd(fields[b"r"], {"c": fields[b"c"], "v": fields[b"p"]}, maxlen=10_000)
                await pipe.execute()

    async def read() -> None:
        last = "$"
        while not stop:
            found = await reader.xread({replies: last}, count=1000, block=100)
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    last = entry_id
                    future = waiting.pop(fields[b"c"], None)
                    if future is not None:
                        future.set_result(fields[b"v"])

    tasks = [asyncio.create_task(serve()), asyncio.create_task(read())]
    await asyncio.sleep(0.05)

    async def ask(i: int) -> bytes:
        corr = str(i).encode()
        future = waiting[corr] = asyncio.get_running_loop().create_future()
        body = f'{{"i":{i},"p":"{PAYLOAD}"}}'
        await client.xadd(requests, {"c": corr, "r": replies, "p": body}, maxlen=10_000)
        return await future

    elapsed = await concurrently(n, ask)
    stop = True
    await asyncio.gather(*tasks)
    for c in (server, client, reader):
        await c.aclose()
    return elapsed


async def rabbit_raw_asks(url: str, n: int) -> float:
    """A request queue (server consumer replies to reply_to) and an exclusive reply queue."""
    loop = asyncio.get_running_loop()
    conn = await pika_connection(url)
    server_ch, client_ch = await pika_channel(conn), await pika_channel(conn)
    requests = f"raw.req.{uuid.uuid4().hex[:8]}"
    await pika_call(server_ch.queue_declare, requests, exclusive=True, auto_delete=True)
    frame = await pika_call(client_ch.queue_declare, "", exclusive=True, auto_delete=True)
    replies = frame.method.queue
    waiting: dict[str, asyncio.Future[bytes]] = {}

    def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
        ch.basic_publish(
            "", props.reply_to, body, pika.BasicProperties(correlation_id=props.correlation_id)
        )

    def on_reply(ch: Any, method: Any, props: Any, body: bytes) -> None:
        future = waiting.pop(props.correlation_id, None)
        if future is not None:
            future.set_result(body)

    await pika_call(server_ch.basic_consume, requests, on_request, auto_ack=True)
    await pika_call(client_ch.basic_consume, replies, on_reply, auto_ack=True)

    async def ask(i: int) -> bytes:
        corr = str(i)
        future = waiting[corr] = loop.create_future()
        body = f'{{"i":{i},"p":"{PAYLOAD}"}}'.encode()
        props = pika.BasicProperties(correlation_id=corr, reply_to=replies)
        client_ch.basic_publish("", requests, body, props)
        return await future

    elapsed = await concurrently(n, ask)
    await pika_close(conn)
    return elapsed


async def kafka_raw_asks(url: str, n: int) -> float:
    """A request topic (a server consumer produces replies) and a reply topic, aiokafka."""
    bootstrap = url.split("://", 1)[1].split("?", 1)[0]
    tag = uuid.uuid4().hex[:8]
    requests, replies = f"raw.req.{tag}", f"raw.rep.{tag}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    server_producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    await server_producer.start()
    for topic in (requests, replies):
        await producer.send_and_wait(topic, b"warm-up")  # creates the topics
    consumers = []
    for topic in (requests, replies):
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
            auto_offset_reset="latest", fetch_max_wait_ms=100,
        )  # fmt: skip
        await consumer.start()
        for tp in consumer.assignment():
            await consumer.seek_to_end(tp)
            await consumer.position(tp)
        consumers.append(consumer)
    waiting: dict[bytes, asyncio.Future[bytes]] = {}
    stop = False

    async def serve() -> None:
        while not stop:
            batch = await consumers[0].getmany(timeout_ms=100)
            sent = []
            for records in batch.values():
                for r in records:
                    sent.append(await server_producer.send(replies, r.value, key=r.key))
            await asyncio.gather(*sent)

    async def read() -> None:
        while not stop:
            batch = await consumers[1].getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    future = waiting.pop(r.key, None)
                    if future is not None:
                        future.set_result(r.value)

    tasks = [asyncio.create_task(serve()), asyncio.create_task(read())]

    async def ask(i: int) -> bytes:
        corr = str(i).encode()
        future = waiting[corr] = asyncio.get_running_loop().create_future()
        body = f'{{"i":{i},"p":"{PAYLOAD}"}}'.encode()
        await (await producer.send(requests, body, key=corr))
        return await future

    elapsed = await concurrently(n, ask)
    stop = True
    await asyncio.gather(*tasks)
    for consumer in consumers:
        await consumer.stop()
    await producer.stop()
    await server_producer.stop()
    return elapsed


async def redis_raw_tells(url: str, n: int) -> float:
    """Pipelined XADD batches of 100; XREADGROUP COUNT 100, handle, XACK the batch."""
    stream = f"raw.tell.{uuid.uuid4().hex[:8]}"
    producer, consumer = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    await consumer.xgroup_create(stream, "bench", id="0", mkstream=True)
    body = PAYLOAD.encode()

    async def publish() -> None:
        for first in range(0, n, BATCH):
            pipe = producer.pipeline(transaction=False)
            for _ in range(min(BATCH, n - first)):
                pipe.xadd(stream, {b"b": body})
            await pipe.execute()

    async def consume() -> None:
        handled = 0
        while handled < n:
            reply: Any = await consumer.xreadgroup(
                "bench", "c", {stream: ">"}, count=BATCH, block=50
            )
            for _name, entries in reply or ():
                handled += len(entries)
                await consumer.xack(stream, "bench", *(entry_id for entry_id, _ in entries))

    start = time.perf_counter()
    await asyncio.gather(publish(), consume())
    elapsed = time.perf_counter() - start
    await producer.aclose()
    await consumer.aclose()
    return elapsed


async def pika_connection(url: str) -> Any:
    """A pika AsyncioConnection on this loop, open."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[Any] = loop.create_future()
    AsyncioConnection(
        pika.URLParameters(url),
        on_open_callback=opened.set_result,
        on_open_error_callback=lambda _, exc: opened.set_exception(exc),
        custom_ioloop=loop,
    )
    return await opened


async def pika_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A pika method with a completion callback, awaited."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fn(*args, callback=future.set_result, **kwargs)
    return await future


async def pika_channel(conn: Any) -> Any:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn.channel(on_open_callback=future.set_result)
    return await future


async def pika_close(conn: Any) -> None:
    closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn.add_on_close_callback(lambda *_: closed.done() or closed.set_result(None))
    conn.close()
    await closed


async def rabbit_raw_tells(url: str, n: int) -> float:
    """Batches of 100 published with confirms into a quorum queue (as troupe declares);
    a consumer with prefetch 1000 acks every 100 (multiple)."""
    loop = asyncio.get_running_loop()
    queue = f"raw.tell.{uuid.uuid4().hex[:8]}"
    conn = await pika_connection(url)
    pub, con = await pika_channel(conn), await pika_channel(conn)
    await pika_call(pub.queue_declare, queue, durable=True, arguments={"x-queue-type": "quorum"})
    confirmed = {"tag": 0, "want": 0}
    waiter: list[asyncio.Future[None]] = []

    def on_confirm(frame: Any) -> None:
        confirmed["tag"] = max(confirmed["tag"], frame.method.delivery_tag)
        if confirmed["tag"] >= confirmed["want"] and waiter and not waiter[0].done():
            waiter[0].set_result(None)

    await pika_call(pub.confirm_delivery, on_confirm)
    done: asyncio.Future[None] = loop.create_future()
    handled = 0

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal handled
        handled += 1
        if handled % BATCH == 0 or handled == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if handled == n:
            done.set_result(None)

    await pika_call(con.basic_qos, prefetch_count=1000)
    await pika_call(con.basic_consume, queue, on_message)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    body = PAYLOAD.encode()
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        for _ in range(min(BATCH, n - first)):
            pub.basic_publish("", queue, body, props)
        confirmed["want"] = min(first + BATCH, n)
        waiter[:] = [loop.create_future()]
        if confirmed["tag"] < confirmed["want"]:
            await waiter[0]
    await done
    elapsed = time.perf_counter() - start
    await pika_close(conn)
    return elapsed


async def kafka_raw_tells(url: str, n: int) -> float:
    """aiokafka: batches of 100 sends (acks=all, idempotent, linger 5 ms); a group consumer
    with getmany and a commit every 100 ms."""
    bootstrap = url.split("://", 1)[1].split("?", 1)[0]
    topic = f"raw.tell.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")  # creates the topic
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="bench", enable_auto_commit=False,
        auto_offset_reset="latest",
    )  # fmt: skip
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=50)
    for tp in consumer.assignment():
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
    body = PAYLOAD.encode()

    async def publish() -> None:
        for first in range(0, n, BATCH):
            sent = [await producer.send(topic, body) for _ in range(min(BATCH, n - first))]
            await asyncio.gather(*sent)

    async def consume() -> None:
        loop = asyncio.get_running_loop()
        handled = 0
        next_commit = loop.time() + 0.1
        while handled < n:
            batch = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            handled += sum(len(records) for records in batch.values())
            if loop.time() >= next_commit:
                next_commit = loop.time() + 0.1
                await consumer.commit()
        await consumer.commit()

    start = time.perf_counter()
    await asyncio.gather(publish(), consume())
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return elapsed


RAW_TELLS: dict[str, Run] = {
    "redis": redis_raw_tells,
    "rabbitmq": rabbit_raw_tells,
    "kafka": kafka_raw_tells,
}
RAW_ASKS: dict[str, Run] = {
    "redis": redis_raw_asks,
    "rabbitmq": rabbit_raw_asks,
    "kafka": kafka_raw_asks,
}


def paired_rates(repeat: int, n: int, url: str, ours: Run, raw: Run) -> tuple[list[float], ...]:
    """Rates of (troupe, raw) pairs run back to back, the order alternating; one warm-up each."""
    troupe.run(ours(url, max(n // 10, 50)))
    troupe.run(raw(url, max(n // 10, 50)))
    mine: list[float] = []
    theirs: list[float] = []
    for i in range(repeat):
        order = [(ours, mine), (raw, theirs)]
        for fn, out in order if i % 2 == 0 else reversed(order):
            out.append(n / troupe.run(fn(url, n)))
    return mine, theirs


def add_row(report: Report, name: str, unit: str, mine: list[float], theirs: list[float]) -> None:
    ratios = [round(a / b, 3) for a, b in zip(mine, theirs, strict=True)]
    report.add(
        name, unit, statistics.median(mine), {"raw": statistics.median(theirs)},
        paired_ratios=ratios, median_paired_ratio=statistics.median(ratios),
    )  # fmt: skip
    print(f"  paired ratios {ratios} (median {statistics.median(ratios):.2f})", flush=True)


def measure(kind: str, url: str, asks: int, tells: int, repeat: int, report: Report) -> None:
    mine, theirs = paired_rates(repeat, asks, url, troupe_asks, RAW_ASKS[kind])
    add_row(report, f"{kind}_remote_ask", "asks/s", mine, theirs)
    mine, theirs = paired_rates(repeat, tells, url, troupe_tells, RAW_TELLS[kind])
    add_row(report, f"{kind}_remote_tell", "msg/s", mine, theirs)


def main() -> None:
    args = parse_args(__doc__ or "", ROWS)
    asks = 2_000 if args.quick else 10_000
    tells = 5_000 if args.quick else 20_000
    repeat = args.repeat or (3 if args.quick else 5)
    report = Report("remote")
    if args.want("memory"):

        async def memory(fn: Any, n: int) -> float:
            return float(await fn("memory://", n, connect("memory://")))

        ask_rates = [asks / troupe.run(memory(troupe_asks, asks)) for _ in range(repeat)]
        tell_rates = [tells / troupe.run(memory(troupe_tells, tells)) for _ in range(repeat)]
        report.add("memory_remote_ask", "asks/s", statistics.median(ask_rates), {})
        report.add("memory_remote_tell", "msg/s", statistics.median(tell_rates), {})
    if args.want("redis"):
        with RedisServer() as server:
            measure("redis", server.url, asks, tells, repeat, report)
    if args.want("rabbitmq"):
        with RabbitServer() as server:
            measure("rabbitmq", server.url, asks, tells, repeat, report)
    if args.want("kafka"):
        with KafkaServer() as server:
            measure("kafka", server.url, asks, tells, repeat, report)
    report.write(args.json)


if __name__ == "__main__":
    main()
