"""Remote actors: ask round trips and told messages per second through each broker,
troupe's remote refs vs the raw client doing the same by hand, in the same run.

Question: what does a remote ref cost over the broker's own client? For each of
Redis, RabbitMQ and Kafka (servers this script starts) and the in-memory broker,
two sides each (see ``_brokers_common``: setup untimed, wall and process CPU time):

- **asks**: ``ASKS`` round trips with ``CONCURRENCY`` outstanding, from a client
  system to an echo actor exported by a server system (two systems, two broker
  connections, one process), ``PAYLOAD`` (a JSON object of about 100 bytes) each
  way. The guarantee is at most once (nothing acked or stored durably), so the raw
  side uses the same non-durable channels troupe's inboxes do: the client sends
  each request (JSON-encoded) with a correlation id and its reply address, a server
  loop decodes it, runs the handler and sends the encoded result to that address,
  and a reader decodes replies and matches them to futures.
  Redis: XADD (``MAXLEN ~``) on a request and a reply stream read with XREAD BLOCK,
  RESP2 clients as troupe's; RabbitMQ: a direct exchange, a request and a reply
  queue (exclusive, ``x-max-length``, transient messages, auto ack), pika's
  AsyncioConnection, one connection per side; Kafka: a request and a reply topic,
  aiokafka producers configured as troupe's (acks=all, idempotent, linger 5 ms:
  more than at most once needs, as on troupe's side) and group-less consumers.
- **tells**: ``TELLS`` messages told to the remote ref until the exported actor
  handled them all and they were acked (producer bridge -> stream -> consumer
  bridge, acked after the handler; at least once with attempts counted). The raw
  side publishes JSON-encoded messages durably in batches of ``BATCH`` (each batch
  confirmed before the next), and consumes them with the broker's own
  at-least-once consumer, decoding each and acking after handling. Attempts: the
  raw side relies on what the broker counts by itself per delivery (Redis: the
  pending list's delivery count; RabbitMQ: the quorum queue's delivery count;
  Kafka: none, the committed offset only); troupe counts handler starts exactly
  (its journal, no broker round trip). Redis: pipelined XADD, XREADGROUP COUNT
  100, XACK per page; RabbitMQ: a quorum queue, persistent messages, publisher
  confirms, prefetch 1000, a multiple ack every 100; Kafka: acks=all,
  idempotent, linger 5 ms, a group consumer committing every 100 ms and at the end.

Each side runs once to warm up, then ``--repeat`` (default 3) rounds of (troupe,
raw) run back to back, the order alternating; a row reports the median rate of
each side, the median of the per-round ratios troupe/raw (target >= 0.8) and the
median CPU microseconds per message of this process.

    python benchmarks/remote.py --quick --json benchmarks/results/remote.json
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pika
import redis.asyncio as aioredis
from _brokers_common import PAYLOAD, Side, Stopwatch, Timing, add_row, rounds, wait_for
from _common import Report, parse_args
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pika.adapters.asyncio_connection import AsyncioConnection

from troupe import Actor, ActorSystem
from troupe.actors import export, remote, remote_node
from troupe.actors.remote_node import stream_of
from troupe.brokers import Broker, connect
from troupe.brokers.servers import KafkaServer, RabbitServer, RedisServer

CONCURRENCY = 16
BATCH = 100
BACKLOG = 10_000  # the bound of troupe's topics (troupe.brokers.tail.TOPIC_BACKLOG)
ROWS = ("memory", "redis", "rabbitmq", "kafka")
ROUND_TRIPS = {"counted": "ask round trips (msg/s = round trips/s)"}


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Counter(Actor):
    def __init__(self, total: int, done: asyncio.Future[None]) -> None:
        self.total = total
        self.count = 0
        self.done = done

    def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.total:
            self.done.set_result(None)


async def concurrently(n: int, ask: Callable[[int], Awaitable[Any]]) -> None:
    """``n`` calls of ``ask`` with CONCURRENCY in flight."""

    async def worker(first: int) -> None:
        for i in range(first, n, CONCURRENCY):
            await ask(i)

    await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))


_memory: dict[str, Broker] = {}


def brokers_for(url: str) -> tuple[Broker, Broker]:
    """The server's and the client's broker: two connections (memory: one broker object,
    the "server" every system of this process shares)."""
    if url == "memory://":
        shared = _memory.setdefault(url, connect(url))
        return shared, shared
    return connect(url), connect(url)


async def close_brokers(url: str, *brokers: Broker) -> None:
    if url != "memory://":
        for broker in brokers:
            await broker.close()


async def troupe_asks(url: str, n: int, name: str) -> Timing:
    server_broker, client_broker = brokers_for(url)
    watch = Stopwatch()
    async with ActorSystem("server") as server, ActorSystem("client") as client:
        await export(server, server.spawn(Echo), name, via=server_broker)
        ref = remote(client, name, via=client_broker)
        await wait_for(lambda: bool(remote_node(client, client_broker).view(name).live()), 0.01)
        await ref.ask(PAYLOAD)
        watch.start()
        await concurrently(n, lambda i: ref.ask(PAYLOAD))
        timing = watch.stop()
    await close_brokers(url, server_broker, client_broker)
    return timing


async def troupe_tells(url: str, n: int, name: str) -> Timing:
    server_broker, client_broker = brokers_for(url)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch = Stopwatch()
    async with ActorSystem("server") as server, ActorSystem("client") as client:
        counter = server.spawn(Counter, n + 1, done)
        node = await export(server, counter, name, via=server_broker)
        stats = server_broker.stats.consumer(stream_of(name), stream_of(name), node.id)
        ref = remote(client, name, via=client_broker)
        await ref.tell("warm-up")  # counted: the n timed ones follow once it was acked
        await wait_for(lambda: stats.acked >= 1, 0.005)
        watch.start()
        for _ in range(n):
            await ref.tell(PAYLOAD)
        await done
        await wait_for(lambda: stats.acked >= n + 1)
        timing = watch.stop()
    await close_brokers(url, server_broker, client_broker)
    return timing


# -- raw request/reply by hand ---------------------------------------------------------------


def handle(message: Any) -> Any:
    """The raw sides' echo handler."""
    return message


def redis_client(url: str) -> aioredis.Redis:
    """A plain redis-py client speaking RESP2, as RedisBroker's does."""
    return aioredis.Redis.from_url(url, protocol=2)


async def redis_raw_asks(url: str, n: int, name: str) -> Timing:
    """XADD requests (correlation id, reply stream, JSON) / a server XREAD loop XADDs replies."""
    requests, replies = f"raw.req.{name}", f"raw.rep.{name}"
    server, client, reader = (redis_client(url) for _ in range(3))
    waiting: dict[bytes, asyncio.Future[Any]] = {}
    stop = False

    async def serve() -> None:
        last = "$"
        while not stop:
            found: Any = await server.xread({requests: last}, count=1000, block=100)
            for _stream, entries in found or ():
                pipe = server.pipeline(transaction=False)
                for entry_id, fields in entries:
                    last = entry_id
                    value = json.dumps(handle(json.loads(fields[b"p"])))
                    pipe.xadd(
                        fields[b"r"], {"c": fields[b"c"], "v": value},
                        maxlen=BACKLOG, approximate=True,
                    )  # fmt: skip
                await pipe.execute()

    async def read() -> None:
        last = "$"
        while not stop:
            found: Any = await reader.xread({replies: last}, count=1000, block=100)
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    last = entry_id
                    future = waiting.pop(fields[b"c"], None)
                    if future is not None:
                        future.set_result(json.loads(fields[b"v"]))

    tasks = [asyncio.create_task(serve()), asyncio.create_task(read())]
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()

    async def ask(i: int) -> Any:
        corr = str(i).encode()
        future = waiting[corr] = loop.create_future()
        fields = {"c": corr, "r": replies, "p": json.dumps(PAYLOAD)}
        await client.xadd(requests, fields, maxlen=BACKLOG, approximate=True)  # type: ignore[arg-type]
        return await future

    watch = Stopwatch()
    watch.start()
    await concurrently(n, ask)
    timing = watch.stop()
    stop = True
    await asyncio.gather(*tasks)
    await server.delete(requests, replies)
    for c in (server, client, reader):
        await c.aclose()
    return timing


async def rabbit_raw_asks(url: str, n: int, name: str) -> Timing:
    """A direct exchange; a request queue (a server consumer replies to reply_to) and an
    exclusive reply queue; transient messages, auto ack; a connection per side."""
    loop = asyncio.get_running_loop()
    server_conn, client_conn = await pika_connection(url), await pika_connection(url)
    server_ch, client_ch = await pika_channel(server_conn), await pika_channel(client_conn)
    exchange = "raw.asks"
    await pika_call(server_ch.exchange_declare, exchange, exchange_type="direct", durable=False)
    bound = {"x-max-length": BACKLOG}
    requests = f"raw.req.{name}"
    await pika_call(server_ch.queue_declare, requests, exclusive=True, arguments=bound)
    await pika_call(server_ch.queue_bind, requests, exchange, routing_key=requests)
    frame = await pika_call(client_ch.queue_declare, "", exclusive=True, arguments=bound)
    replies = frame.method.queue
    await pika_call(client_ch.queue_bind, replies, exchange, routing_key=replies)
    waiting: dict[str, asyncio.Future[Any]] = {}

    def on_request(ch: Any, method: Any, props: Any, body: bytes) -> None:
        value = json.dumps(handle(json.loads(body))).encode()
        reply = pika.BasicProperties(correlation_id=props.correlation_id)
        ch.basic_publish(exchange, props.reply_to, value, reply)

    def on_reply(ch: Any, method: Any, props: Any, body: bytes) -> None:
        future = waiting.pop(props.correlation_id, None)
        if future is not None:
            future.set_result(json.loads(body))

    await pika_call(server_ch.basic_consume, requests, on_request, auto_ack=True)
    await pika_call(client_ch.basic_consume, replies, on_reply, auto_ack=True)

    async def ask(i: int) -> Any:
        corr = str(i)
        future = waiting[corr] = loop.create_future()
        props = pika.BasicProperties(correlation_id=corr, reply_to=replies)
        client_ch.basic_publish(exchange, requests, json.dumps(PAYLOAD).encode(), props)
        return await future

    watch = Stopwatch()
    watch.start()
    await concurrently(n, ask)
    timing = watch.stop()
    await pika_close(server_conn)
    await pika_close(client_conn)
    return timing


def kafka_bootstrap(url: str) -> str:
    return url.split("://", 1)[1].split("?", 1)[0]


def kafka_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer configured as KafkaBroker's."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )


async def kafka_tail(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer of ``topic`` from its end, as troupe's tails."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
        auto_offset_reset="latest", fetch_max_wait_ms=100,
    )  # fmt: skip
    await consumer.start()
    for tp in consumer.assignment():
        await consumer.seek_to_end(tp)
        await consumer.position(tp)
    return consumer


async def kafka_raw_asks(url: str, n: int, name: str) -> Timing:
    """A request topic (a server consumer produces replies to the header's topic) and a
    reply topic; the correlation id is the record key."""
    bootstrap = kafka_bootstrap(url)
    requests, replies = f"raw.req.{name}", f"raw.rep.{name}"
    producer, server_producer = kafka_producer(bootstrap), kafka_producer(bootstrap)
    await producer.start()
    await server_producer.start()
    for topic in (requests, replies):
        await producer.send_and_wait(topic, b"warm-up")  # creates the topics
    consumers = [await kafka_tail(bootstrap, topic) for topic in (requests, replies)]
    waiting: dict[bytes, asyncio.Future[Any]] = {}
    stop = False

    async def serve() -> None:
        while not stop:
            batch = await consumers[0].getmany(timeout_ms=100)
            sent = []
            for records in batch.values():
                for r in records:
                    reply_to = dict(r.headers)["r"].decode()
                    value = json.dumps(handle(json.loads(r.value))).encode()
                    sent.append(await server_producer.send(reply_to, value, key=r.key))
            await asyncio.gather(*sent)

    async def read() -> None:
        while not stop:
            batch = await consumers[1].getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    future = waiting.pop(r.key, None)
                    if future is not None:
                        future.set_result(json.loads(r.value))

    tasks = [asyncio.create_task(serve()), asyncio.create_task(read())]
    loop = asyncio.get_running_loop()
    reply_header = [("r", replies.encode())]

    async def ask(i: int) -> Any:
        corr = str(i).encode()
        future = waiting[corr] = loop.create_future()
        body = json.dumps(PAYLOAD).encode()
        await (await producer.send(requests, body, key=corr, headers=reply_header))
        return await future

    watch = Stopwatch()
    watch.start()
    await concurrently(n, ask)
    timing = watch.stop()
    stop = True
    await asyncio.gather(*tasks)
    for consumer in consumers:
        await consumer.stop()
    await producer.stop()
    await server_producer.stop()
    return timing


class Handled:
    """The raw tell sides' handler: counts decoded messages."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, body: bytes) -> None:
        json.loads(body)
        self.count += 1


async def redis_raw_tells(url: str, n: int, name: str) -> Timing:
    """Pipelined XADD batches of 100; XREADGROUP COUNT 100, decode and handle, XACK the page."""
    stream = f"raw.tell.{name}"
    producer, consumer = redis_client(url), redis_client(url)
    await consumer.xgroup_create(stream, "bench", id="0", mkstream=True)
    handled = Handled()

    async def publish() -> None:
        for first in range(0, n, BATCH):
            pipe = producer.pipeline(transaction=False)
            for _ in range(min(BATCH, n - first)):
                pipe.xadd(stream, {b"b": json.dumps(PAYLOAD).encode()})
            await pipe.execute()

    async def consume() -> None:
        while handled.count < n:
            reply: Any = await consumer.xreadgroup(
                "bench", "c", {stream: ">"}, count=BATCH, block=50
            )
            for _name, entries in reply or ():
                for _id, fields in entries:
                    handled(fields[b"b"])
                await consumer.xack(stream, "bench", *(entry_id for entry_id, _ in entries))

    watch = Stopwatch()
    watch.start()
    await asyncio.gather(publish(), consume())
    timing = watch.stop()
    await producer.delete(stream)
    await producer.aclose()
    await consumer.aclose()
    return timing


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


async def rabbit_raw_tells(url: str, n: int, name: str) -> Timing:
    """Batches of 100 persistent messages published with confirms into a quorum queue (as
    troupe declares); a consumer with prefetch 1000 acks every 100 (multiple)."""
    loop = asyncio.get_running_loop()
    queue = f"raw.tell.{name}"
    pub_conn, con_conn = await pika_connection(url), await pika_connection(url)
    pub, con = await pika_channel(pub_conn), await pika_channel(con_conn)
    await pika_call(pub.queue_declare, queue, durable=True, arguments={"x-queue-type": "quorum"})
    confirmed = {"tag": 0, "want": 0}
    waiter: list[asyncio.Future[None]] = []

    def on_confirm(frame: Any) -> None:
        confirmed["tag"] = max(confirmed["tag"], frame.method.delivery_tag)
        if confirmed["tag"] >= confirmed["want"] and waiter and not waiter[0].done():
            waiter[0].set_result(None)

    await pika_call(pub.confirm_delivery, on_confirm)
    done: asyncio.Future[None] = loop.create_future()
    handled = Handled()

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        handled(body)
        if handled.count % BATCH == 0 or handled.count == n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if handled.count == n:
            done.set_result(None)

    await pika_call(con.basic_qos, prefetch_count=1000)
    await pika_call(con.basic_consume, queue, on_message)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    watch = Stopwatch()
    watch.start()
    for first in range(0, n, BATCH):
        for _ in range(min(BATCH, n - first)):
            pub.basic_publish("", queue, json.dumps(PAYLOAD).encode(), props)
        confirmed["want"] = min(first + BATCH, n)
        waiter[:] = [loop.create_future()]
        if confirmed["tag"] < confirmed["want"]:
            await waiter[0]
    await done
    timing = watch.stop()
    await pika_call(pub.queue_delete, queue)
    await pika_close(pub_conn)
    await pika_close(con_conn)
    return timing


async def kafka_raw_tells(url: str, n: int, name: str) -> Timing:
    """aiokafka: batches of 100 sends (acks=all, idempotent, linger 5 ms), each batch
    acknowledged before the next; a group consumer with getmany (100 records), a commit
    every 100 ms and one at the end."""
    bootstrap = kafka_bootstrap(url)
    topic = f"raw.tell.{name}"
    producer = kafka_producer(bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"{}")  # creates the topic
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
    handled = Handled()

    async def publish() -> None:
        for first in range(0, n, BATCH):
            sent = [
                await producer.send(topic, json.dumps(PAYLOAD).encode())
                for _ in range(min(BATCH, n - first))
            ]
            await asyncio.gather(*sent)

    async def consume() -> None:
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + 0.1
        while handled.count < n:
            batch = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            for records in batch.values():
                for r in records:
                    handled(r.value)
            if loop.time() >= next_commit:
                next_commit = loop.time() + 0.1
                await consumer.commit()
        await consumer.commit()

    watch = Stopwatch()
    watch.start()
    await asyncio.gather(publish(), consume())
    timing = watch.stop()
    await consumer.stop()
    await producer.stop()
    return timing


RAW_ASKS: dict[str, Side] = {
    "redis": redis_raw_asks,
    "rabbitmq": rabbit_raw_asks,
    "kafka": kafka_raw_asks,
}
RAW_TELLS: dict[str, Side] = {
    "redis": redis_raw_tells,
    "rabbitmq": rabbit_raw_tells,
    "kafka": kafka_raw_tells,
}


def measure(kind: str, url: str, asks: int, tells: int, repeat: int, report: Report) -> None:
    """The ask and the tell row of one broker: (troupe, raw) rounds, order alternating."""
    ask_sides = {"troupe": troupe_asks, "raw": RAW_ASKS[kind]}
    add_row(report, f"{kind}_remote_ask", asks, rounds(repeat, asks, url, ask_sides), **ROUND_TRIPS)
    tell_sides = {"troupe": troupe_tells, "raw": RAW_TELLS[kind]}
    add_row(report, f"{kind}_remote_tell", tells, rounds(repeat, tells, url, tell_sides))


def main() -> None:
    args = parse_args((__doc__ or "").splitlines()[0], ROWS)
    asks = 2_000 if args.quick else 10_000
    tells = 20_000 if args.quick else 50_000  # (5,000 was too short to time: ±0.2 between rounds)
    repeat = args.repeat or 3
    report = Report("remote")
    if args.want("memory"):
        memory = "memory://"
        ask_rounds = rounds(repeat, asks, memory, {"troupe": troupe_asks})
        add_row(report, "memory_remote_ask", asks, ask_rounds, **ROUND_TRIPS)
        tell_rounds = rounds(repeat, tells, memory, {"troupe": troupe_tells})
        add_row(report, "memory_remote_tell", tells, tell_rounds)
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
