"""The delivery contract, run against every broker (see ``BROKERS`` in conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, MailboxConfig
from troupe.brokers import Broker, ConsumerBridge, MemoryBroker, Message, connect
from troupe.brokers.attempts import JournaledAttempts
from troupe.brokers.kafka import KafkaBroker
from troupe.brokers.message import (
    ATTEMPT,
    DELIVERIES,
    ERROR_REASON,
    MESSAGE_ID,
    ORIGINAL_ENTRY_ID,
    ORIGINAL_GROUP,
    ORIGINAL_STREAM,
    TRACEPARENT,
)
from troupe.brokers.rabbitmq import RabbitBroker
from troupe.brokers.redis.broker import RedisBroker
from troupe.brokers.session import Delivery
from troupe.supervisors import Backoff

FAST_RETRY = Backoff(initial=0.001, maximum=0.01, jitter="none")


class Recorder(Actor):
    """Records payloads and headers; ``fail[payload]`` = how many times to fail it first."""

    def __init__(self, seen: list[tuple[Any, dict[str, str]]], fail: dict[Any, int]) -> None:
        self.seen = seen
        self.fail = fail

    def receive(self, message: Any) -> Any:
        key = message if not isinstance(message, dict) else message.get("n")
        if self.fail.get(key, 0) != 0:
            self.fail[key] -= 1
            raise RuntimeError(f"handler refused {key}")
        self.seen.append((message, dict(self.headers)))
        return None


class Gate(Actor):
    """Records a payload once the gate opens (an asyncio.Event shared with the test)."""

    mailbox: ClassVar[MailboxConfig | None] = MailboxConfig(capacity=5)

    def __init__(self, gate: asyncio.Event, started: list[Any], done: list[Any]) -> None:
        self.gate = gate
        self.started = started
        self.done = done

    async def receive(self, message: Any) -> None:
        self.started.append(message)
        await self.gate.wait()
        self.done.append(message)


async def wait_pending(broker: Broker, stream: str, group: str, expected: int) -> None:
    deadline = time.monotonic() + 15
    while (n := await broker.pending(stream, group)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"pending is {n}, expected {expected}")
        await asyncio.sleep(0.01)


def bridge_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"retry": FAST_RETRY, "block": 0.05, "drain_timeout": 2.0}
    options.update(overrides)
    return options


async def test_delivers_payloads_with_headers_and_acks(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {}, name="recorder")
        system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        ids = [
            await broker.publish("s", {"n": i}, headers={TRACEPARENT: f"00-{i:032x}-{i:016x}-01"})
            for i in range(50)
        ]
        await eventually(lambda: len(seen) == 50)
        await wait_pending(broker, "s", "g", 0)
    assert [m for m, _ in seen] == [{"n": i} for i in range(50)]
    for (_, headers), message_id in zip(seen, ids, strict=True):
        assert headers[ATTEMPT] == "1"
        assert headers[MESSAGE_ID] == message_id
        assert headers[TRACEPARENT].startswith("00-")
    assert await broker.dead_letters("s") == []


async def test_target_by_name(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        system.spawn(ConsumerBridge, broker, "s", "g", "late", **bridge_options())
        await broker.publish("s", "hello")
        await asyncio.sleep(0.1)
        system.spawn(Recorder, seen, {}, name="late")  # the target appears later
        await eventually(lambda: len(seen) == 1)
    assert seen[0][0] == "hello"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failures=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=12))
def test_at_least_once_under_handler_failures(broker_url: str, failures: list[int]) -> None:
    """Every message is handled once it stops failing; each failure is one more delivery."""

    async def scenario() -> None:
        broker = connect(broker_url)
        stream = f"s-{uuid.uuid4().hex}"
        seen: list[tuple[Any, dict[str, str]]] = []
        plan = dict(enumerate(failures))
        async with ActorSystem(restart=TOLERANT) as system:
            target = system.spawn(Recorder, seen, dict(plan))
            bridge = system.spawn(
                ConsumerBridge, broker, stream, "g", target, **bridge_options(max_deliveries=4)
            )
            for i in range(len(failures)):
                await broker.publish(stream, {"n": i})
            await eventually(lambda: len(seen) == len(failures))
            await wait_pending(broker, stream, "g", 0)
            stats = system.cell_of(bridge).actor.stats  # type: ignore[attr-defined]
        await broker.close()
        attempts = {m["n"]: int(h[ATTEMPT]) for m, h in seen}
        assert attempts == {i: k + 1 for i, k in plan.items()}
        assert stats.failed == sum(failures)
        assert stats.acked == len(failures)
        assert stats.dead_lettered == 0

    asyncio.run(scenario())


async def test_dead_letter_after_max_deliveries_with_reason(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    calls: list[int] = []

    class Poisoned(Recorder):
        def receive(self, message: Any) -> Any:
            if message == "poison":
                calls.append(1)
                raise ValueError("cannot digest poison")
            return super().receive(message)

    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Poisoned, seen, {})
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, **bridge_options(max_deliveries=3)
        )
        poison_id = await broker.publish("s", "poison", key="k1")
        await broker.publish("s", "fine")
        await eventually(lambda: len(seen) == 1)
        await eventually(lambda: system.cell_of(bridge).actor.stats.dead_lettered == 1)  # type: ignore[attr-defined]
        await wait_pending(broker, "s", "g", 0)
    assert len(calls) == 3
    [dead] = await broker.dead_letters("s")
    assert dead.id == poison_id
    assert dead.key == "k1"
    assert broker.serializer.loads(dead.body) == "poison"
    assert "cannot digest poison" in dead.headers[ERROR_REASON]
    assert dead.headers[DELIVERIES] == "3"
    assert dead.headers[ORIGINAL_STREAM] == "s"
    assert dead.headers[ORIGINAL_GROUP] == "g"
    assert dead.headers[ORIGINAL_ENTRY_ID]


async def test_no_ack_before_the_handler_returned(broker: Broker) -> None:
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)
        system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        for i in range(3):
            await broker.publish("s", i)
        await eventually(lambda: len(started) == 1)
        await asyncio.sleep(0.2)
        assert await broker.pending("s", "g") == 3  # delivered, none handled: none acked
        gate.set()
        await eventually(lambda: len(done) == 3)
        await wait_pending(broker, "s", "g", 0)


async def test_intake_is_bounded_by_the_target_mailbox(broker: Broker) -> None:
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)  # mailbox capacity 5
        bridge = system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        for i in range(50):
            await broker.publish("s", i)
        await eventually(lambda: len(started) == 1)
        await asyncio.sleep(0.3)
        actor = system.cell_of(bridge).actor
        assert actor.in_flight <= 6  # type: ignore[attr-defined]  # 5 queued + 1 being handled
        unacked = await broker.pending("s", "g")
        if broker.capabilities.requeue_on_close:  # pending counts the ready ones too
            unacked -= await broker.lag("s", "g") or 0
        assert unacked <= 6
        assert len(system.cell_of(target).mailbox) <= 5
        gate.set()
        await eventually(lambda: len(done) == 50)
    assert done == list(range(50))


async def test_drain_acks_only_what_was_handled(broker: Broker) -> None:
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)
        bridge = system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            consumer="c1",
            **bridge_options(drain_timeout=0.2),
        )
        for i in range(10):
            await broker.publish("s", i)
        await eventually(lambda: len(started) == 1)
        await asyncio.sleep(0.1)
        await bridge.stop()  # the handler is stuck: the drain deadline passes
        assert done == []
        in_target = await broker.pending("s", "g")
        if broker.capabilities.requeue_on_close:  # given back to the queue with the rest
            assert in_target == 10
            in_target = len(started) + len(system.cell_of(target).mailbox)
        assert in_target >= 1  # nothing acked
        unacked = await broker.pending("s", "g")
        gate.set()
        await eventually(lambda: len(done) == in_target)  # they finish, unacked
        await asyncio.sleep(0.1)
        assert await broker.pending("s", "g") == unacked
        # a new bridge with the same consumer name resumes its own unacked work
        seen: list[tuple[Any, dict[str, str]]] = []
        again = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "s", "g", again, consumer="c1", **bridge_options())
        await eventually(lambda: len(seen) == 10)
        await wait_pending(broker, "s", "g", 0)
    assert sorted(m for m, _ in seen) == list(range(10))
    redelivered = [int(h[ATTEMPT]) for m, h in seen if m < in_target]
    assert all(a == 2 for a in redelivered)


async def test_drain_on_stop_finishes_in_flight_work(broker: Broker) -> None:
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, **bridge_options(drain_timeout=5.0)
        )
        for i in range(4):
            await broker.publish("s", i)
        await eventually(lambda: len(started) == 1)
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(bridge.stop())
        await asyncio.sleep(0.1)
        gate.set()  # in-flight work finishes within the deadline
        await stopping
        assert done == [0, 1, 2, 3]
        assert await broker.pending("s", "g") == 0  # handled, so acked


async def crashed_consumer(
    broker: Broker, name: str, *, start: bool, claim_idle: float = 30.0
) -> list[Delivery]:
    """A consumer that takes what it is offered, starts handling it (or not), and dies."""
    session = await broker.consume("s", "g", name, window=100, claim_idle=claim_idle)
    taken = await session.fetch(100, 0)
    if start:
        for delivery in taken:
            session.attempts.started(delivery)
    log = session.attempts
    if isinstance(log, JournaledAttempts):
        log.journal.close(keep=True)  # a crash: its journal stays for a folder
    else:
        log.close()
    if broker.capabilities.requeue_on_close:  # this process lives on: give deliveries back
        await session.close()
    return taken


async def test_redelivery_after_consumer_crash(broker: Broker) -> None:
    """Taken by a consumer that died before handling: redelivered, no attempt lost."""
    await broker.ensure_group("s", "g")
    for i in range(10):
        await broker.publish("s", i)
    assert len(await crashed_consumer(broker, "dead-consumer", start=False)) == 10
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, **bridge_options(claim_idle=0.2)
        )
        await eventually(lambda: len(seen) == 10)
        await wait_pending(broker, "s", "g", 0)
        stats = system.cell_of(bridge).actor.stats  # type: ignore[attr-defined]
    assert sorted(m for m, _ in seen) == list(range(10))
    assert {h[ATTEMPT] for _, h in seen} == {"1"}  # fetched, never started: not an attempt
    # offsets (Kafka): no broker delivery count tells a redelivery from a first one
    assert stats.redelivered == (0 if broker.capabilities.offsets else 10)


async def test_restarted_consumer_resumes_its_own_pending_at_once(broker: Broker) -> None:
    await broker.ensure_group("s", "g")
    for i in range(5):
        await broker.publish("s", i)
    await crashed_consumer(broker, "me", start=True)
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            consumer="me",
            **bridge_options(claim_idle=3600),
        )
        await eventually(lambda: len(seen) == 5)
    assert [m for m, _ in seen] == list(range(5))
    assert {h[ATTEMPT] for _, h in seen} == {"2"}  # started once before the crash


async def test_message_that_kills_consumers_is_dead_lettered(broker: Broker) -> None:
    """Every start killed its consumer (no handler ever returned): DLQ after max_deliveries
    starts, without running it again."""
    await broker.ensure_group("s", "g")
    await broker.publish("s", "deadly")
    for n in range(3):
        [taken] = await crashed_consumer(broker, f"c{n}", start=True, claim_idle=0)
        assert taken.attempts == n
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            **bridge_options(claim_idle=0.05, max_deliveries=3),
        )
        await wait_pending(broker, "s", "g", 0)
    assert seen == []
    [dead] = await broker.dead_letters("s")
    assert "started 3 times" in dead.headers[ERROR_REASON]
    assert dead.headers[DELIVERIES] == "3"


async def test_fetched_but_never_started_loses_no_attempt(broker: Broker) -> None:
    """A crash loop that takes a message again and again without starting it does not
    dead-letter it, though the broker's own count passes the backstop: every crash is a
    consumer end of this host, which explains one delivery."""
    await broker.ensure_group("s", "g")
    await broker.publish("s", "healthy")
    for n in range(6):
        [taken] = await crashed_consumer(broker, f"c{n}", start=False, claim_idle=0)
        assert taken.attempts == 0
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            **bridge_options(claim_idle=0.05, max_deliveries=3, max_broker_deliveries=4),
        )
        await eventually(lambda: len(seen) == 1)
        await wait_pending(broker, "s", "g", 0)
    assert seen[0][0] == "healthy"
    assert seen[0][1][ATTEMPT] == "1"
    assert await broker.dead_letters("s") == []


# a broker with one offset per partition counts no deliveries; one that lives in a single
# process (memory) accounts for every delivery itself: no other host can hide starts
@pytest.mark.needs(offsets=False, shared=True)
async def test_broker_delivery_count_backstop(
    broker: Broker, broker_url: str, tmp_path: Path
) -> None:
    """Consumers whose journals are lost with them (hosts that never came back, containers
    with a fresh temp dir) may have started a message: nobody folds their starts or their
    ends, so the broker's own delivery count past ``max_broker_deliveries`` ends the loop."""
    await broker.ensure_group("s", "g")
    await broker.publish("s", "lost")
    for n in range(4):
        gone = connect(broker_url, journal_dir=tmp_path / f"gone-{n}")
        try:
            await crashed_consumer(gone, f"c{n}", start=True, claim_idle=0)
        finally:
            await gone.close()
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, [], {})
        system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            **bridge_options(claim_idle=0.05, max_deliveries=2, max_broker_deliveries=4),
        )
        await wait_pending(broker, "s", "g", 0)
    [dead] = await broker.dead_letters("s")
    assert "max_broker_deliveries=4" in dead.headers[ERROR_REASON]


@pytest.mark.needs(ordering="stream")
async def test_ordering_is_kept_for_one_consumer(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options(batch=7))
        for start in range(0, 300, 50):
            await broker.publish_messages(
                "s", [broker.message({"n": i}) for i in range(start, start + 50)]
            )
        await eventually(lambda: len(seen) == 300)
    assert [m["n"] for m, _ in seen] == list(range(300))


@pytest.mark.needs(delayed=True)
async def test_delayed_delivery(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    arrival: dict[Any, float] = {}

    class Stamp(Recorder):
        def receive(self, message: Any) -> Any:
            arrival[message] = time.time()
            return super().receive(message)

    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Stamp, seen, {})
        system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        sent = time.time()
        await broker.publish("s", "later", delay=0.4)
        await broker.publish("s", "at", at=sent + 0.2)
        await broker.publish("s", "now")
        await eventually(lambda: len(seen) == 3)
    assert [m for m, _ in seen] == ["now", "at", "later"]
    assert arrival["later"] >= sent + 0.4
    assert arrival["at"] >= sent + 0.2


async def test_malformed_payloads_go_to_the_dlq_and_consumption_goes_on(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        bridge = system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        bad = Message(b"{not json")  # a body of another producer: read by the serializer
        await broker.publish_messages("s", [bad])
        bad_id = bad.id
        reason = await inject_raw(broker, "s", {b"x": b"no body field"})
        await broker.publish("s", {"n": 1})
        await eventually(lambda: len(seen) == 1)
        await wait_pending(broker, "s", "g", 0)
        stats = system.cell_of(bridge).actor.stats  # type: ignore[attr-defined]
    assert seen[0][0] == {"n": 1}
    dead = await broker.dead_letters("s")
    assert len(dead) == 2
    assert dead[0].id == bad_id
    assert dead[0].body == b"{not json"  # the original bytes
    assert "does not decode" in dead[0].headers[ERROR_REASON]
    assert reason in dead[1].headers[ERROR_REASON]
    assert stats.malformed == 2
    assert stats.dead_lettered == 2


async def test_a_raw_entry_of_another_producer_keeps_its_fields_in_the_dlq(
    broker: Broker,
) -> None:
    fields = {b"foo": b"bar", b"blob": bytes(range(256)), b"m": b"not troupe framing"}
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, [], {})
        system.spawn(ConsumerBridge, broker, "s", "g", target, **bridge_options())
        await inject_raw(broker, "s", fields)
        await eventually(lambda: dlq_size(broker, "s", 1))
        await wait_pending(broker, "s", "g", 0)
    [dead] = await broker.dead_letters("s")
    if broker.capabilities.raw_entries:
        assert dead.raw == fields  # byte for byte
        assert "unreadable" in dead.headers[ERROR_REASON]
    else:  # a message of another producer: its body and properties, byte for byte
        assert dead.body == fields[b"blob"]
        assert dead.headers["foo"] == "bar"
        assert "does not decode" in dead.headers[ERROR_REASON]
    assert dead.headers[ORIGINAL_STREAM] == "s"
    assert dead.headers[ORIGINAL_ENTRY_ID]


async def dlq_size(broker: Broker, stream: str, n: int) -> bool:
    return len(await broker.dead_letters(stream)) == n


async def inject_raw(broker: Broker, stream: str, fields: dict[bytes, bytes]) -> str:
    """Write an entry another producer could write; returns what its DLQ reason says."""
    if isinstance(broker, MemoryBroker):
        broker.inject_raw(stream, fields)
    elif isinstance(broker, RedisBroker):
        await broker.client.xadd(stream, fields)  # type: ignore[arg-type]
    elif isinstance(broker, RabbitBroker):  # no troupe headers, undecodable as JSON
        body = fields.get(b"blob", b"".join(fields.values()))
        await broker.publish_raw(stream, body, {"foo": "bar"}, content_type="application/json")
        return "does not decode"
    elif isinstance(broker, KafkaBroker):  # a plain record: no troupe headers, not JSON
        topic = broker.topic(stream)
        await broker.ensure_topic(topic)
        producer = await broker.producer()
        body = fields.get(b"blob", b"".join(fields.values()))
        await producer.send_and_wait(topic, body, headers=[("foo", b"bar")])
        return "does not decode"
    else:
        raise AssertionError(f"no raw injection for {broker!r}")
    return "neither" if b"m" not in fields else "unreadable"


async def test_counters_are_kept_on_the_broker_across_restarts(broker: Broker) -> None:
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen, {})
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, consumer="c", **bridge_options()
        )
        await broker.publish("s", 1)
        await eventually(lambda: len(seen) == 1)
        system.cell_of(bridge).restart()
        await broker.publish("s", 2)
        await eventually(lambda: len(seen) == 2)
        await wait_pending(broker, "s", "g", 0)
    stats = broker.stats.consumer("s", "g", "c")
    assert stats.delivered == 2
    assert stats.acked == 2


async def test_maxlen_trims_the_stream(broker_url: str) -> None:
    broker = connect(broker_url, maxlen=10)
    for start in range(0, 1000, 100):
        await broker.publish_messages("s", [broker.message(i) for i in range(start, start + 100)])
    kept = await broker.read_stream("s", 2000)
    await broker.close()
    assert 10 <= len(kept) < 1000  # approximate trimming (MAXLEN ~) may keep a few more
    assert broker.serializer.loads(kept[-1].body) == 999


async def test_lag_and_in_flight_are_visible_to_collectors(broker: Broker) -> None:
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    await broker.publish_messages("s", [broker.message(i) for i in range(20)])
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)
        system.spawn(ConsumerBridge, broker, "s", "g", target, consumer="c", **bridge_options())
        stats = broker.stats.consumer("s", "g", "c")
        await eventually(lambda: stats.in_flight >= 1 and stats.lag is not None)
        assert stats.lag is not None and stats.lag >= 14  # 20 published, at most 6 taken
        gate.set()
        await eventually(lambda: len(done) == 20 and stats.acked == 20)
        await eventually(lambda: stats.in_flight == 0)


async def test_own_pending_is_resumed_page_by_page(broker: Broker) -> None:
    """A restarted consumer takes its own pending entries back in pages no bigger than
    asked (what will start soon), in order, skipping what was acked meanwhile."""
    await broker.ensure_group("s", "g")
    await broker.publish_messages("s", [broker.message(i) for i in range(250)])
    first = await broker.consume("s", "g", "me", window=250)
    taken = await first.fetch(250, 0)
    await first.ack(taken[10:20])  # acked meanwhile
    first.attempts.close()
    offsets = broker.capabilities.offsets  # one committed offset per partition (Kafka)
    if offsets:
        await first.close()  # the member restarts: the next one starts at the commit
    again = await broker.consume("s", "g", "me", window=100)
    resumed: list[str] = []
    while True:
        page = await again.fetch(100, 0.5)
        if not page:
            break
        assert len(page) <= 100
        assert all((offsets or d.deliveries == 2) and d.attempts == 0 for d in page)
        resumed.extend(d.entry_id for d in page)
        await again.ack(page)  # within the window: a push broker sends more once acked
    again.attempts.close()
    if offsets:
        await again.close()
    kept = taken if offsets else taken[:10] + taken[20:]  # offsets: nothing after the gap
    expected = [d.entry_id for d in kept]
    assert resumed == expected


async def test_a_bridge_killed_while_it_drains_gives_its_work_to_the_next_consumer(
    broker: Broker,
) -> None:
    """A kill during the drain of a restart cancels ``on_stop`` before it closed the session,
    and no task of the bridge is left to notice: the bridge still ends as a killed bridge
    does (its session closed), so the next consumer gets every message it held."""
    gate = asyncio.Event()
    started: list[Any] = []
    seen: list[tuple[Any, dict[str, str]]] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, [])
        for i in range(2):
            await broker.publish("s", i)
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, **bridge_options(drain_timeout=30.0)
        )
        await eventually(lambda: started == [0])  # 1 waits behind it in the mailbox
        cell = system.cell_of(bridge)
        cell.restart()  # its drain waits for the handler of 0
        await asyncio.sleep(0.5)
        cell.kill()
        again = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "s", "g", again, **bridge_options(claim_idle=0.1))
        try:
            await eventually(lambda: sorted(m for m, _ in seen) == [0, 1], timeout=20)
        finally:
            gate.set()


async def test_an_abruptly_killed_bridge_leaves_its_work_unacked(broker: Broker) -> None:
    """A bridge killed without a drain acks nothing more; a new consumer takes its entries
    over, and what the dead bridge had started counts as an attempt."""
    gate = asyncio.Event()
    started: list[Any] = []
    done: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Gate, gate, started, done)
        for i in range(3):  # all there before the bridge's first fetch: the target gets all
            await broker.publish("s", i)  # three (on Kafka a fetch may end after record 0)
        bridge = system.spawn(
            ConsumerBridge, broker, "s", "g", target, consumer="doomed", **bridge_options()
        )
        await eventually(lambda: len(started) == 1)
        system.cell_of(bridge).kill()  # no drain
        gate.set()
        await eventually(lambda: len(done) == 3)  # the target still handles what it holds
        await asyncio.sleep(0.2)
        assert await broker.pending("s", "g") == 3  # nothing acked by the dead bridge
        seen: list[tuple[Any, dict[str, str]]] = []
        again = system.spawn(Recorder, seen, {})
        system.spawn(ConsumerBridge, broker, "s", "g", again, **bridge_options(claim_idle=0.1))
        await eventually(lambda: len(seen) == 3)
        await wait_pending(broker, "s", "g", 0)
    assert sorted(m for m, _ in seen) == [0, 1, 2]
    assert all(h[ATTEMPT] == "2" for _, h in seen)
