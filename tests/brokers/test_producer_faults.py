"""ProducerBridge on a real Redis under faults: an outage, lost replies, the delivery timeout,
a shutdown deadline. Nothing is lost, nothing is stored twice, every publish is reported once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from troupe import ActorSystem, Backoff
from troupe.brokers import BrokerError, ProducerBridge, Publish, PublishError, connect
from troupe.brokers.redis.publish import record_key
from troupe.brokers.servers import RedisServer

FAST = Backoff(initial=0.01, maximum=0.2, jitter="equal")


class LossyProxy:
    """A TCP proxy in front of Redis that loses chosen script calls (real sockets, real Redis).

    Script calls (EVALSHA) through it are numbered from 0. For a number in
    ``drop_requests`` the connection is cut before the request reaches Redis;
    for one in ``drop_replies`` Redis runs the script and the connection is cut
    before its reply reaches the client: the ambiguous failure a retry must not
    turn into a duplicate.
    """

    def __init__(self, port: int, drop_requests: set[int], drop_replies: set[int]) -> None:
        self.port = port
        self.drop_requests = drop_requests
        self.drop_replies = drop_replies
        self.calls = 0
        self.lost_replies = 0
        self.server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> LossyProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:  # links end on their own once both sides are cut
            writer.close()
        await asyncio.gather(*self._links)
        await self.server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._writers.append(client_w)
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers.append(server_w)
        waiting: list[int] = []  # script calls sent on this connection, reply not yet seen

        def cut() -> None:
            client_w.close()
            server_w.close()

        async def upstream() -> None:
            while chunk := await client_r.read(65536):
                if b"EVALSHA" in chunk:
                    number = self.calls
                    self.calls += 1
                    if number in self.drop_requests:
                        return cut()
                    waiting.append(number)
                server_w.write(chunk)
                await server_w.drain()
            cut()

        async def downstream() -> None:
            while chunk := await server_r.read(65536):
                if waiting:
                    number = waiting.pop(0)
                    if number in self.drop_replies and not chunk.startswith(b"-NOSCRIPT"):
                        self.lost_replies += 1
                        return cut()
                client_w.write(chunk)
                await client_w.drain()
            cut()

        try:
            await asyncio.gather(upstream(), downstream())
        except OSError:
            cut()
        finally:
            self._links.discard(task)


async def stored(url: str, stream: str) -> list[tuple[str, Any]]:
    broker = connect(url)
    try:
        messages = await broker.read_stream(stream, 100_000)
        return [(m.id, broker.serializer.loads(m.body)) for m in messages]
    finally:
        await broker.close()


async def warm_up(url: str) -> None:
    """Publish once so Redis has the script cached (no NOSCRIPT round trip to count)."""
    broker = connect(url)
    try:
        await broker.publish_once(
            "warm-up", [broker.message(0)], producer="w", sequence=1, window=1
        )
    finally:
        await broker.close()


async def test_a_repeated_batch_is_stored_once_and_an_older_one_refused(redis_url: str) -> None:
    broker = connect(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        batch = [broker.message({"n": i}) for i in range(3)]
        first = await broker.publish_once("s", batch, producer="p", sequence=1, window=10)
        assert await broker.publish_once("s", batch, producer="p", sequence=1, window=10) == first
        later = [broker.message({"n": 3}, key="k")]
        await broker.publish_once("s", later, producer="p", sequence=2, window=10)
        with pytest.raises(BrokerError, match="older"):
            await broker.publish_once("s", batch, producer="p", sequence=1, window=10)
        assert [m.id for m in await broker.read_stream("s")] == [m.id for m in batch + later]
        assert len(first) == 3 and all("-" in entry_id for entry_id in first)  # Redis entry ids
        ttl = await client.pttl(record_key("s", "p"))
        assert 0 < ttl <= 10_000  # the record expires: memory stays bounded
        delayed = [broker.message("later")]
        for _ in range(2):  # a delayed batch repeated: held once
            await broker.publish_once("s", delayed, producer="p", sequence=3, window=10, delay=0.05)
        await asyncio.sleep(0.1)
        assert await broker.promote_due("s") == 1
        assert [m.id for m in await broker.read_stream("s")][-1] == delayed[0].id
    finally:
        await client.aclose()
        await broker.close()


async def test_a_lost_reply_is_retried_without_a_duplicate(
    redis_server: RedisServer, redis_url: str
) -> None:
    await warm_up(redis_url)
    async with LossyProxy(redis_server.port, set(), {0, 2}) as proxy:
        broker = connect(proxy.url)
        try:
            async with ActorSystem() as system:
                producer = system.spawn(ProducerBridge, broker, "out", retry=FAST)
                ids = [await producer.ask({"n": i}, timeout=30) for i in range(3)]
                stats = broker.stats.producer(producer.name)
        finally:
            await broker.close()
    assert proxy.lost_replies == 2  # Redis stored those batches; the replies never came
    assert stats.retries == 2
    assert await stored(redis_url, "out") == [(ids[i], {"n": i}) for i in range(3)]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    sizes=st.lists(st.integers(1, 8), min_size=2, max_size=6),
    drop_requests=st.sets(st.integers(0, 7), max_size=3),
    drop_replies=st.sets(st.integers(0, 5), min_size=1, max_size=4),
)
def test_lost_requests_and_replies_never_lose_or_duplicate_a_publish(
    redis_server: RedisServer, sizes: list[int], drop_requests: set[int], drop_replies: set[int]
) -> None:
    """Rounds of concurrent asks (each round one batch) over a link that loses random
    requests and replies: every ask gets its id, the stream holds each message once, in order."""
    stream = f"faults-{uuid.uuid4().hex}"

    async def scenario() -> None:
        async with LossyProxy(redis_server.port, drop_requests, drop_replies) as proxy:
            broker = connect(proxy.url)
            try:
                async with ActorSystem() as system:
                    producer = system.spawn(
                        ProducerBridge, broker, stream, retry=Backoff(0.001, 0.01)
                    )
                    expected: list[tuple[str, Any]] = []
                    for round_, size in enumerate(sizes):
                        payloads = [{"round": round_, "n": n} for n in range(size)]
                        ids = await asyncio.gather(*(producer.ask(p, timeout=30) for p in payloads))
                        expected += zip(ids, payloads, strict=True)
            finally:
                await broker.close()
        event(f"replies lost: {min(proxy.lost_replies, 2)}")
        assert await stored(redis_server.url, stream) == expected

    asyncio.run(scenario())


@pytest.mark.timeout(120)
async def test_redis_down_for_5_s_during_asked_publishes_loses_and_duplicates_nothing(
    redis_server: RedisServer, redis_url: str
) -> None:
    broker = connect(redis_url)
    confirmed: dict[str, Any] = {}
    try:
        async with ActorSystem() as system:
            producer = system.spawn(ProducerBridge, broker, "orders", retry=FAST)
            stats = broker.stats.producer(producer.name)
            stop = asyncio.Event()

            async def asker(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    payload = {"worker": worker, "n": n}
                    confirmed[await producer.ask(payload, timeout=60)] = payload
                    n += 1
                    await asyncio.sleep(0.005)

            askers = [asyncio.create_task(asker(w)) for w in range(8)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis_server.stop)
            down = time.monotonic()
            await asyncio.sleep(5)
            before_restart = len(confirmed)
            await asyncio.to_thread(redis_server.start)
            up = time.monotonic()
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*askers)  # every ask succeeded (none raised)
            assert system.cell_of(producer).restarts == 0  # the bridge never failed
    finally:
        await broker.close()
    assert up - down >= 5
    assert stats.retries > 0 and stats.failed == 0
    assert len(confirmed) > before_restart  # asks waiting through the outage completed
    entries = await stored(redis_url, "orders")
    assert len(entries) == len({message_id for message_id, _ in entries})  # no duplicates
    assert dict(entries) == confirmed  # nothing lost, nothing extra
    for worker in range(8):  # each asker's publishes in its order
        ns = [p["n"] for _, p in entries if p["worker"] == worker]
        assert ns == list(range(len(ns)))


async def test_a_told_publish_past_the_delivery_timeout_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer(password="pw-not-in-logs") as server:
        broker = connect(server.url)
        try:
            async with ActorSystem() as system:
                producer = system.spawn(
                    ProducerBridge, broker, "out", delivery_timeout=0.5, retry=FAST
                )
                await producer.ask("first", timeout=10)
                await asyncio.to_thread(server.stop)
                stats = broker.stats.producer(producer.name)
                with caplog.at_level(logging.INFO, logger="troupe.brokers.producer"):
                    began = time.monotonic()
                    producer.tell({"lost": 1})
                    while stats.failed < 1:
                        assert time.monotonic() - began < 10
                        await asyncio.sleep(0.02)
                    gave_up = time.monotonic() - began
                    await asyncio.to_thread(server.start)
                    assert isinstance(await producer.ask("after", timeout=10), str)
                assert system.cell_of(producer).restarts == 0
        finally:
            await broker.close()
    assert 0.4 <= gave_up < 10  # the timeout, not a fixed number of attempts
    assert (stats.failed, stats.published) == (1, 2)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    line = errors[0].getMessage()
    assert "\n" not in line
    assert "delivery_timeout" in line and "1 told" in line and "'out'" in line
    assert "Connection refused" in line or "connecting" in line  # the reason
    assert "pw-not-in-logs" not in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line when publishing started failing


async def test_shutdown_cuts_the_retrying_batch_off_at_the_deadline(
    redis_server: RedisServer, redis_url: str
) -> None:
    broker = connect(redis_url)
    try:
        system = ActorSystem(shutdown_timeout=0.5)
        async with system:
            producer = system.spawn(ProducerBridge, broker, "out", retry=FAST)
            await producer.ask("first", timeout=10)
            await asyncio.to_thread(redis_server.stop)
            asks = [producer.ask(Publish(i), timeout=60) for i in range(4)]
            producer.tell("told")  # queued with the asks: one batch
            await asyncio.sleep(0.3)  # one batch: retrying while Redis is down
            stats = broker.stats.producer(producer.name)
            began = time.monotonic()
        closed_in = time.monotonic() - began
        results = await asyncio.gather(*asks, return_exceptions=True)
    finally:
        await asyncio.to_thread(redis_server.start)
        await broker.close()
    assert closed_in < 5  # the delivery timeout (120 s) did not hold the shutdown (0.5 s)
    assert all(isinstance(r, PublishError) for r in results), results
    assert all("shutdown" in str(r) for r in results)
    assert stats.failed == 1  # the told one
    assert stats.batches == 1
