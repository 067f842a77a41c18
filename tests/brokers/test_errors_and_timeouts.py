"""Errors and timeouts a user can rely on (issue 20): options checked at connect(),
permanent publish errors at once, publishes bounded by delivery_timeout (Kafka too),
bytes that round-trip, the message key in the handler's headers, a RabbitMQ queue
declared with other arguments, Kafka commits of an idle partition, client log noise."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, Backoff, ConfigError
from troupe.brokers import (
    Broker,
    ConsumerBridge,
    ProducerBridge,
    Publish,
    PublishError,
    connect,
)
from troupe.brokers.kafka import KafkaBroker
from troupe.brokers.log_limit import RateLimit, limit_client_logs
from troupe.brokers.message import KEY
from troupe.brokers.rabbitmq.topology import Exchange, Route, Topology
from troupe.brokers.servers import free_port
from troupe.brokers.servers.kafka import KafkaServer

FAST = Backoff(initial=0.05, maximum=0.3, jitter="equal")


class Recorder(Actor):
    def __init__(self, seen: list[tuple[Any, dict[str, str]]]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append((message, dict(self.headers)))


# -- options checked at connect() --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "setting"),
    [
        ("memory://", {"maxlen": -5}, "maxlen"),
        ("memory://", {"max_len": 5}, "max_len"),
        ("redis://127.0.0.1:99999/0", {}, "broker url"),
        ("redis://127.0.0.1:6379/0", {"maxlen": -5}, "maxlen"),
        ("redis://127.0.0.1:6379/0", {"sockettimeout": 1}, "sockettimeout"),
        ("amqp://u:p@127.0.0.1:70000/v", {}, "broker url"),
        ("amqp://u:p@127.0.0.1:5672/v", {"maxlen": 0}, "maxlen"),
        ("amqp://u:p@127.0.0.1:5672/v", {"prefetch": 5}, "prefetch"),
        ("kafka://127.0.0.1:9092,127.0.0.1:0", {}, "broker url"),
        ("kafka://127.0.0.1:9092", {"maxlen": -5}, "maxlen"),
        ("kafka://127.0.0.1:9092", {"acks": 1}, "acks"),  # troupe sets it (acks=all)
    ],
)
def test_bad_options_are_a_config_error_at_connect(
    url: str, options: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        connect(url, **options)
    assert raised.value.setting == setting
    assert ":p@" not in str(raised.value)  # never the password


def test_known_client_options_pass() -> None:
    connect("redis://127.0.0.1:6379/0", socket_timeout=3, ssl_ca_certs="ca.pem")
    connect("kafka://127.0.0.1:9092", security_protocol="PLAINTEXT", client_id="app")


# -- publishes bounded by delivery_timeout -------------------------------------------------


async def test_an_unreachable_broker_fails_an_ask_with_publish_error_in_delivery_timeout() -> None:
    broker = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        async with ActorSystem() as system:
            producer = system.spawn(ProducerBridge, broker, "s", delivery_timeout=1.5, retry=FAST)
            began = time.monotonic()
            with pytest.raises(PublishError, match=r"delivery_timeout 1\.5 s"):
                await producer.ask({"n": 1}, timeout=None)
            took = time.monotonic() - began
    finally:
        await broker.close()
    assert 1.4 <= took < 4


async def test_an_ask_without_a_timeout_waits_for_the_outcome_not_the_system_ask_timeout() -> None:
    broker = connect(f"redis://127.0.0.1:{free_port()}/0")
    try:
        async with ActorSystem(ask_timeout=0.5) as system:  # shorter than delivery_timeout
            producer = system.spawn(ProducerBridge, broker, "s", delivery_timeout=1.5, retry=FAST)
            assert producer.default_ask_timeout is None
            with pytest.raises(PublishError, match=r"delivery_timeout 1\.5 s"):
                await producer.ask({"n": 1})  # no AskTimeout after 0.5 s
    finally:
        await broker.close()


async def test_a_permanent_error_fails_at_once_and_says_so(rabbitmq_url: str) -> None:
    topology = Topology(exchanges=(Exchange("ex"),), routes={"s": Route("ex", "nowhere")})
    broker = connect(rabbitmq_url, topology=topology)
    try:
        async with ActorSystem() as system:
            producer = system.spawn(ProducerBridge, broker, "s", retry=FAST)
            began = time.monotonic()
            with pytest.raises(PublishError) as raised:
                await producer.ask({"n": 1}, timeout=None)
            took = time.monotonic() - began
    finally:
        await broker.close()
    assert took < 5  # not after delivery_timeout (120 s)
    assert "NO_ROUTE" in str(raised.value) and "refused" in str(raised.value)
    assert "delivery_timeout" not in str(raised.value)


@pytest.mark.timeout(240)
async def test_kafka_delivery_timeout_bounds_an_ask_and_the_failed_message_is_not_stored(
    kafka_server: KafkaServer | None, kafka_url: str
) -> None:
    if kafka_server is None:
        pytest.fail("this test stops the server: unset TROUPE_KAFKA_BOOTSTRAP")
    broker = connect(kafka_url)
    try:
        async with ActorSystem() as system:
            producer = system.spawn(ProducerBridge, broker, "s", delivery_timeout=2, retry=FAST)
            await producer.ask({"n": "before"}, timeout=None)  # the producer is connected
            await asyncio.to_thread(kafka_server.stop)
            began = time.monotonic()
            with pytest.raises(PublishError, match="delivery_timeout 2 s"):
                await producer.ask({"n": "lost"}, timeout=None)
            took = time.monotonic() - began
            await asyncio.to_thread(kafka_server.start)
            await producer.ask({"n": "after"}, timeout=None)
            await asyncio.sleep(3)  # a withdrawn batch would have been sent by now
            stored = [broker.serializer.loads(m.body) for m in await broker.read_stream("s")]
    finally:
        await broker.close()
    assert took < 2 + 2.5  # was an AskTimeout after 30 s
    assert stored == [{"n": "before"}, {"n": "after"}]  # the failed one was withdrawn


# -- bytes round-trip, the key in the headers ----------------------------------------------


async def test_bytes_round_trip_as_bytes_and_the_key_is_in_the_headers(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen)
        system.spawn(ConsumerBridge, broker, "s", "g", target, block=0.05)
        producer = system.spawn(ProducerBridge, broker, "s")
        await producer.ask(b"hello")
        await producer.ask(b'{"a": 1}')
        await producer.ask(Publish({"a": 2}, key="customer-7"))
        await eventually(lambda: len(seen) == 3, timeout=60)
    by_body = {repr(payload): headers for payload, headers in seen}
    assert set(by_body) == {repr(b"hello"), repr(b'{"a": 1}'), repr({"a": 2})}
    assert await broker.dead_letters("s") == []
    assert by_body[repr({"a": 2})][KEY] == "customer-7"
    assert KEY not in by_body[repr(b"hello")]


# -- a RabbitMQ queue declared with other arguments ----------------------------------------


async def test_a_queue_declared_with_other_arguments_stops_the_consumer_with_one_line(
    rabbitmq_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().queue_declare("jobs", durable=True)  # classic, no arguments
    finally:
        connection.close()
    broker = connect(rabbitmq_url, journal_dir=tmp_path)  # declares quorum queues
    caplog.set_level(logging.INFO)
    try:
        async with ActorSystem() as system:
            target = system.spawn(Recorder, [])
            bridge = system.spawn(ConsumerBridge, broker, "jobs", "g", target)
            await eventually(lambda: not bridge.is_alive, timeout=10)
            await asyncio.sleep(1)
            assert system.cell_of(bridge).restarts == 0
    finally:
        await broker.close()
    ours = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name != "pika.channel"]
    assert len(ours) == 1, [r.getMessage() for r in ours]  # pika's own Channel.Close aside
    line = ours[0].getMessage()
    assert bridge.name in line and "queue 'jobs' argument 'x-" in line  # the differing one
    assert "guest:guest" not in line


# -- Kafka commits an idle partition within commit_interval --------------------------------


async def test_kafka_commits_the_last_acks_within_commit_interval(kafka_url: str) -> None:
    broker = connect(kafka_url, commit_interval=0.2)
    assert isinstance(broker, KafkaBroker)
    seen: list[tuple[Any, dict[str, str]]] = []
    try:
        async with ActorSystem() as system:
            target = system.spawn(Recorder, seen)
            # a fetch waits up to 5 s for records: a commit that waited for the next fetch
            # would come seconds late
            system.spawn(ConsumerBridge, broker, "s", "g", target, block=5.0)
            await broker.publish("s", {"n": 1}, key="k")
            await eventually(lambda: len(seen) == 1, timeout=60)
            handled = time.monotonic()
            while await broker.pending("s", "g") != 0:
                assert time.monotonic() - handled < 2.0, "not committed within commit_interval"
                await asyncio.sleep(0.05)
    finally:
        await broker.close()
    assert seen[0][1][KEY] == "k"


# -- client log noise ----------------------------------------------------------------------


def test_client_loggers_let_one_line_per_interval_through() -> None:
    limit = limit_client_logs("aiokafka")
    assert limit in logging.getLogger("aiokafka.conn").filters
    clock = iter([0.0, 0.5, 1.0, 20.0]).__next__
    fresh = RateLimit(interval=10.0, clock=clock)
    record = logging.LogRecord("pika.x", logging.ERROR, "", 0, "down %s", ("now",), None)
    assert [fresh.filter(record) for _ in range(3)] == [True, False, False]
    assert fresh.filter(record) and "2 similar lines held back" in record.getMessage()
    assert fresh.held == 2
