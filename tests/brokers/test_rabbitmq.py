"""RabbitMQ specifics: other producers' messages, topology, queue kinds, delay tiers, URLs."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
import uuid
from typing import Any
from urllib.parse import unquote

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import ActorSystem, ConfigError
from troupe.brokers import (
    BrokerConnectionError,
    ConsumerBridge,
    ProducerBridge,
    PublishError,
    connect,
)
from troupe.brokers.message import ATTEMPT, ERROR_REASON
from troupe.brokers.producer import Publish
from troupe.brokers.rabbitmq import RabbitBroker
from troupe.brokers.rabbitmq.publish import delay_tier
from troupe.brokers.rabbitmq.topology import Binding, Exchange, Queue, Route, Topology
from troupe.brokers.servers import free_port
from troupe.brokers.servers.rabbitmq import RabbitServer
from troupe.supervisors import Backoff

from .test_conformance import Recorder

FAST = Backoff(initial=0.01, maximum=0.05, jitter="none")


def rabbit(url: str, **options: Any) -> RabbitBroker:
    broker = connect(url, **options)
    assert isinstance(broker, RabbitBroker)
    return broker


def plain_publish(url: str, queue: str, messages: list[tuple[bytes, pika.BasicProperties]]) -> None:
    """What a stock pika script does (no troupe headers)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for body, properties in messages:
            channel.basic_publish("", queue, body, properties)
    finally:
        connection.close()


def plain_read(url: str, queue: str) -> list[tuple[bytes, pika.BasicProperties]]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    out = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((body, properties))
    finally:
        connection.close()


async def test_messages_of_other_producers_are_consumed_by_content_type(
    rabbitmq_url: str,
) -> None:
    broker = rabbit(rabbitmq_url)
    await broker.ensure_group("in", "g")
    props = pika.BasicProperties
    await asyncio.to_thread(
        plain_publish,
        rabbitmq_url,
        "in",
        [
            (b"hello", props(content_type="text/plain", correlation_id="c-1", headers={"n": 5})),
            (bytes(range(256)), props(content_type="application/octet-stream")),
            (b'{"a": 1}', None),  # no content type: the bridge's serializer (JSON)
            (b"\x00\x01", props(content_type="application/x-custom", app_id="legacy")),
        ],
    )
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "in", "g", target, block=0.05, retry=FAST)
        await eventually(lambda: len(seen) == 4)
    (text, h1), (blob, h2), (obj, _), (custom, h4) = seen
    assert text == "hello"
    assert h1["amqp-correlation-id"] == "c-1"
    assert h1["n"] == "5"
    assert h1["amqp-routing-key"] == "in"
    assert blob == bytes(range(256))
    assert h2["content-type"] == "application/octet-stream"
    assert obj == {"a": 1}
    assert custom == b"\x00\x01"  # unknown content type: handed over as bytes
    assert h4["amqp-app-id"] == "legacy"
    assert await broker.dead_letters("in") == []
    await broker.close()


async def test_undecodable_message_of_another_producer_keeps_bytes_and_properties_in_dlq(
    rabbitmq_url: str,
) -> None:
    broker = rabbit(rabbitmq_url)
    await broker.ensure_group("in", "g")
    body = b"\xff{not json"
    properties = pika.BasicProperties(
        content_type="application/json", correlation_id="c-9", type="order", headers={"k": "v"}
    )
    await asyncio.to_thread(plain_publish, rabbitmq_url, "in", [(body, properties)])
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, [], {})
        system.spawn(ConsumerBridge, broker, "in", "g", target, block=0.05, retry=FAST)
        await eventually(lambda: _dlq_size(broker, "in", 1))
    await broker.close()
    [(dead_body, dead)] = await asyncio.to_thread(plain_read, rabbitmq_url, "in:dlq")
    assert dead_body == body
    assert dead.content_type == "application/json"
    assert dead.correlation_id == "c-9"
    assert dead.type == "order"
    assert dead.headers["k"] == "v"
    assert "does not decode" in dead.headers[ERROR_REASON]


async def _dlq_size(broker: RabbitBroker, stream: str, n: int) -> bool:
    return len(await broker.dead_letters(stream)) == n


async def test_topology_routes_by_key_and_unroutable_publishes_fail(rabbitmq_url: str) -> None:
    topology = Topology(
        exchanges=(Exchange("orders", "topic"),),
        queues=(Queue("billing"),),
        bindings=(Binding("orders", "billing", "order.*"),),
        routes={"orders": Route("orders", None)},  # routing key = the message key
    )
    broker = rabbit(rabbitmq_url, topology=topology)
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "billing", "g", target, block=0.05)
        producer = system.spawn(ProducerBridge, broker, "orders", retry=FAST)
        await producer.ask(Publish({"n": 1}, key="order.created"))
        began = time.monotonic()
        with pytest.raises(PublishError, match="NO_ROUTE"):
            await producer.ask(Publish({"n": 2}, key="invoice.sent"))  # no binding matches
        assert time.monotonic() - began < 5  # reported at once, not after delivery_timeout
        await eventually(lambda: len(seen) == 1)
    assert seen[0][0] == {"n": 1}
    await broker.close()


async def test_redeclaring_with_other_settings_is_a_config_error(rabbitmq_url: str) -> None:
    same = Topology(queues=(Queue("jobs", "classic", {"x-max-length": 10}),))
    first = rabbit(rabbitmq_url, topology=same)
    await first.connect()
    again = rabbit(rabbitmq_url, topology=same)
    await again.connect()  # the same settings again: harmless
    changed = Topology(queues=(Queue("jobs", "classic", {"x-max-length": 20}),))
    other = rabbit(rabbitmq_url, topology=changed)
    with pytest.raises(ConfigError) as caught:
        await other.connect()
    assert caught.value.setting == "queue 'jobs' argument 'x-max-length'"
    assert "received '20' but current is '10'" in caught.value.problem
    exchange = rabbit(rabbitmq_url, topology=Topology(exchanges=(Exchange("ex", "topic"),)))
    await exchange.connect()
    clash = rabbit(rabbitmq_url, topology=Topology(exchanges=(Exchange("ex", "fanout"),)))
    with pytest.raises(ConfigError, match="exchange 'ex'"):
        await clash.connect()
    for broker in (first, again, other, exchange, clash):
        await broker.close()


def test_topology_from_configuration_checks_names() -> None:
    with pytest.raises(ConfigError, match="no such exchange"):
        Topology.from_dict({"bindings": [{"exchange": "nope", "queue": "q"}]})
    with pytest.raises(ConfigError, match="kind"):
        Topology.from_dict({"queues": [{"name": "q", "kind": "stream"}]})
    with pytest.raises(ConfigError, match="type"):
        Topology.from_dict({"exchanges": [{"name": "e", "type": "fan"}]})


@pytest.mark.parametrize("kind", ["classic", "quorum"])
async def test_classic_and_quorum_queues_both_work(rabbitmq_url: str, kind: str) -> None:
    broker = rabbit(rabbitmq_url, topology=Topology(default_queue=Queue("*", kind)))  # type: ignore[arg-type]
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {"1": 1})  # fails once: a redelivery
        system.spawn(ConsumerBridge, broker, "q", "g", target, block=0.05, retry=FAST)
        await broker.publish_messages("q", [broker.message(str(i)) for i in range(20)])
        await eventually(lambda: len(seen) == 20)
        await eventually(lambda: _pending(broker, "q", 0))
    assert sorted(int(m) for m, _ in seen) == list(range(20))
    await broker.close()


async def _pending(broker: RabbitBroker, stream: str, n: int) -> bool:
    return await broker.pending(stream, "g") == n


async def test_delays_arrive_after_their_due_time_per_tier(rabbitmq_url: str) -> None:
    """Each delay waits in its tier's queue; within one tier a shorter delay published
    after a longer one waits for it (head of line), by less than the tier's width."""
    broker = rabbit(rabbitmq_url)
    assert delay_tier(0.8) == delay_tier(0.75) != delay_tier(0.2)
    arrival: dict[str, float] = {}
    seen: list[tuple[Any, dict[str, str]]] = []

    class Stamp(Recorder):
        def receive(self, message: Any) -> Any:
            arrival[message] = time.time()
            return super().receive(message)

    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Stamp, seen, {})
        system.spawn(ConsumerBridge, broker, "d", "g", target, block=0.05)
        sent = time.time()
        delays = {"long": 0.8, "short-same-tier": 0.75, "short": 0.2, "now": 0.0}
        for name, delay in delays.items():
            await broker.publish("d", name, delay=delay or None)
        await eventually(lambda: len(seen) == 4)
    for name, delay in delays.items():
        assert arrival[name] >= sent + delay, name  # never before its time
    assert arrival["short"] < sent + 0.75  # another tier: not held behind the long one
    assert arrival["short-same-tier"] <= sent + 0.8 * 1.19 + 0.3
    await broker.close()


async def test_credentials_never_show(rabbitmq_url: str) -> None:
    url = f"amqp://app:s3cret@127.0.0.1:{free_port()}/vh"
    broker = connect(url, reconnect=FAST)
    assert "s3cret" not in repr(broker)
    with pytest.raises(BrokerConnectionError) as caught:
        await broker.connect()
    assert "s3cret" not in str(caught.value)
    assert "app:***@" in str(caught.value)
    with pytest.raises(ConfigError, match="broker url"):
        connect("amqpx://nowhere")


async def test_order_demo_runs_on_rabbitmq(rabbitmq_url: str) -> None:
    """``troupe demo --broker amqp://...``: events and tasks through RabbitMQ, all balanced."""
    from troupe.examples.orders.demo import DemoOptions, run_demo

    options = DemoOptions(broker=rabbitmq_url, orders=120, rate=0, metrics_port=0, seed=3)
    result = await run_demo(options, err=io.StringIO())
    assert result.settled
    assert result.inventory_balanced and result.money_balanced and result.effects_once
    assert result.unique == 120


async def test_amqps_with_a_private_ca(rabbitmq_server: RabbitServer, rabbitmq_url: str) -> None:
    """TLS: amqps:// with the node's CA works; without it the certificate is refused."""
    url = rabbitmq_server.vhost_url(unquote(rabbitmq_url.rsplit("/", 1)[1]), tls=True)
    context = ssl.create_default_context(cafile=rabbitmq_server.ca_file)
    broker = rabbit(url, ssl_context=context)
    await broker.publish("secure", {"n": 1})
    [message] = await broker.read_stream("secure")
    assert broker.serializer.loads(message.body) == {"n": 1}
    await broker.close()
    untrusted = rabbit(url)  # the system's CAs do not know the node's
    with pytest.raises(BrokerConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.connect()


async def test_quorum_delivery_limit_dead_letters_what_nobody_settles(rabbitmq_url: str) -> None:
    """The backstop inside RabbitMQ: past x-delivery-limit the queue's DLX moves the message
    to the DLQ, and the DLQ copy says so."""
    broker = rabbit(rabbitmq_url, topology=Topology(delivery_limit=2))
    await broker.publish("q", "stuck")
    for n in range(3):  # three consumers take it and die without settling
        session = await broker.consume("q", "g", f"c{n}", window=10)
        assert len(await session.fetch(10, 1.0)) == 1
        session.attempts.close()
        await session.close()
    await eventually(lambda: _dlq_size(broker, "q", 1))
    [dead] = await broker.dead_letters("q")
    assert broker.serializer.loads(dead.body) == "stuck"
    assert "delivery_limit" in dead.headers[ERROR_REASON]
    assert await broker.pending("q", "g") == 0
    await broker.close()


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rounds=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=3))
def test_crash_rounds_count_exactly_the_started_attempts(
    rabbitmq_url: str, rounds: list[tuple[int, int]]
) -> None:
    """Consumers take ``take`` messages, start ``start`` of them and die, round after round;
    a bridge then handles all: each message's attempt is one more than its starts, and a
    message taken but never started lost nothing."""

    async def scenario() -> None:
        broker = rabbit(rabbitmq_url)
        queue = f"p-{uuid.uuid4().hex[:8]}"
        await broker.publish_messages(queue, [broker.message(i) for i in range(6)])
        starts = dict.fromkeys(range(6), 0)
        for n, (take, start) in enumerate(rounds):
            session = await broker.consume(queue, "g", f"c{n}", window=max(1, take))
            taken = await session.fetch(take, 1.0) if take else []
            for delivery in taken[:start]:
                session.attempts.started(delivery)
                assert delivery.message is not None
                starts[broker.serializer.loads(delivery.message.body)] += 1
            session.attempts.close()  # dies: its starts stay journaled
            await session.close()
        seen: list[tuple[Any, dict[str, str]]] = []
        async with ActorSystem(restart=TOLERANT) as system:
            target = system.spawn(Recorder, seen, {})
            system.spawn(ConsumerBridge, broker, queue, "g", target, block=0.05, max_deliveries=9)
            await eventually(lambda: len(seen) == 6)
        await broker.close()
        assert {m: int(h[ATTEMPT]) for m, h in seen} == {i: s + 1 for i, s in starts.items()}

    asyncio.run(scenario())


async def test_a_batch_leaves_in_one_write_and_arrives_whole_and_in_order(
    rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frames of a published batch are joined into one socket write (pika's transport
    internals, checked here against the pinned pika); every message arrives, in order."""
    from troupe.brokers.rabbitmq import connection as amqp

    joined: list[bool] = []
    coalesce = amqp.coalesce_output

    def spy(connection: Any) -> bool:
        joined.append(coalesce(connection))
        return joined[-1]

    monkeypatch.setattr(amqp, "coalesce_output", spy)
    broker = rabbit(rabbitmq_url)
    stream = f"joined-{uuid.uuid4().hex[:8]}"
    await broker.ensure_group(stream, stream)
    bodies = [f"m{i}-" * 200 for i in range(60)]  # several frames per write, ~1 KB each
    await broker.publish_messages(stream, [broker.message(body) for body in bodies])
    assert True in joined  # the pinned pika's transport took one joined chunk
    received = await eventually_all(broker, stream, len(bodies))
    assert received == bodies
    await broker.close()


async def eventually_all(broker: RabbitBroker, stream: str, count: int) -> list[Any]:
    """Bodies of ``count`` messages consumed from ``stream`` (acked), in arrival order."""
    session = await broker.consume(stream, stream, "reader", window=count)
    out: list[Any] = []
    deadline = time.monotonic() + 10
    while len(out) < count and time.monotonic() < deadline:
        page = await session.fetch(count - len(out), 0.5)
        out += [broker.serializer.loads(d.message.body) for d in page if d.message is not None]
        await session.ack(page)
    await session.close()
    return out
