"""Remote actors in one process over the in-memory broker: the delivery contract of told
messages, the JSON wire with refs, membership views (properties), bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import eventually
from troupe import Actor, ActorSystem, ConfigError, Terminated
from troupe.actors import NoMembers, RemoteRef, export, remote, remote_node
from troupe.actors.remote_members import Members
from troupe.actors.remote_node import stream_of
from troupe.actors.remote_wire import TOLD_TYPE
from troupe.brokers import BrokerError, MemoryBroker
from troupe.brokers.message import CONTENT_TYPE, ERROR_REASON


class Flaky(Actor):
    """Fails the first ``fails`` times it sees each message ("never...": always)."""

    def __init__(self, fails: int, seen: list[Any]) -> None:
        self.fails = fails
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append(message)
        if self.seen.count(message) <= self.fails or str(message).startswith("never"):
            raise RuntimeError(f"failing {message}")


async def test_told_messages_are_retried_then_dead_lettered() -> None:
    broker = MemoryBroker()
    seen: list[Any] = []
    async with ActorSystem("a") as a, ActorSystem("b") as b:
        flaky = a.spawn(Flaky, 1, seen)
        await export(a, flaky, "flaky", via=broker, max_deliveries=2, retry=_fast())
        ref = remote(b, "flaky", via=broker)
        await ref.tell("once")  # fails once, then handled
        await eventually(lambda: seen.count("once") == 2, timeout=10)
        await ref.tell("never")  # fails twice: dead-lettered with the reason

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters(stream_of("flaky"))) == 1

        await eventually(dead_lettered, timeout=10)
    [dead] = await broker.dead_letters(stream_of("flaky"))
    assert "failing never" in dead.headers[ERROR_REASON]
    assert seen.count("never") == 2


async def test_a_malformed_told_message_goes_to_the_dlq_at_once() -> None:
    broker = MemoryBroker()
    async with ActorSystem("a") as a:
        seen: list[Any] = []
        await export(a, a.spawn(Flaky, 0, seen), "svc", via=broker)
        await broker.publish(stream_of("svc"), b"{not json", headers={CONTENT_TYPE: TOLD_TYPE})

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters(stream_of("svc"))) == 1

        await eventually(dead_lettered, timeout=10)
    [dead] = await broker.dead_letters(stream_of("svc"))
    assert "does not decode" in dead.headers[ERROR_REASON]
    assert dead.body == b"{not json"
    assert seen == []


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


async def test_a_name_whose_last_member_leaves_is_terminated_for_its_watchers() -> None:
    broker = MemoryBroker()
    async with ActorSystem("client") as client:
        remote_node(client, broker, heartbeat=0.2)
        async with ActorSystem("member") as member:
            remote_node(member, broker, heartbeat=0.2)
            echo = member.spawn(Echo)
            await export(member, echo, "echo", via=broker)
            ref = remote(client, "echo", via=broker)
            assert await ref.ask("hi") == "hi"
            notices: list[Terminated] = []
            ref.watch(notices.append)
            await echo.stop()  # the export ends with its actor: "down" at once
            await eventually(lambda: len(notices) == 1, timeout=5)
        assert notices[0].ref == ref and notices[0].reason is None
        with pytest.raises(NoMembers, match="'echo'"):
            await ref.ask("hi")


async def test_bad_exports_fail_with_a_config_error() -> None:
    broker = MemoryBroker()
    async with ActorSystem("a") as a:
        ref = a.spawn(Flaky, 0, [])
        with pytest.raises(ConfigError, match="'name'"):
            await export(a, ref, "has space", via=broker)
        await export(a, ref, "svc", via=broker)
        with pytest.raises(ConfigError, match="already exported"):
            await export(a, ref, "svc", via=broker)
        with pytest.raises(ConfigError, match="'heartbeat'"):
            remote_node(a, broker, heartbeat=2.0)  # the node runs with 1.0 already
        async with ActorSystem("b") as b:
            with pytest.raises(ConfigError, match="'heartbeat'"):
                remote_node(b, broker, heartbeat=0)
        with pytest.raises(ConfigError, match="only exported names"):
            RemoteRef(remote_node(a, broker), inbox="x", actor="y").watch(lambda _: None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(JSON)
def test_the_wire_carries_json_and_refs(value: Any) -> None:
    async def main() -> None:
        broker = MemoryBroker()
        async with ActorSystem("a") as a:
            node = remote_node(a, broker)
            here = a.spawn(Flaky, 0, [])
            there = RemoteRef(node, export="svc")
            body = node.codec.encode({"v": value, "refs": [here, there]})
            decoded = node.codec.decode(body)
            assert decoded["v"] == value
            assert decoded["refs"] == [here, there]  # a ref that points home is local again

    asyncio.run(main())


EVENTS = st.lists(
    st.tuples(st.sampled_from(["up", "down", "tick"]), st.sampled_from("abc"),
              st.floats(0, 2)),
    max_size=30,
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(EVENTS)
def test_membership_holds_exactly_the_unexpired_members(events: list[Any]) -> None:
    view = Members("svc", 0.0)
    now = 0.0
    lease = 1.0
    expires: dict[str, float] = {}
    left: set[str] = set()
    for kind, member, step in events:
        now += step
        if kind == "up":
            view.heartbeat(member, f"inbox-{member}", lease, now)
            if member not in expires or member not in left:
                expires[member] = now + lease
                left.discard(member)
        elif kind == "down":
            view.leave(member, now)
            if member in expires:
                left.add(member)
                expires[member] = min(expires[member], now + 1.0)
        gone = {m.id for m in view.expire(now)}
        assert gone == {m for m, t in expires.items() if t <= now}
        for m in gone:
            del expires[m]
            left.discard(m)
        assert set(view.members) == set(expires)
        live = {m.id for m in view.live()}
        assert live == set(expires) - left
        picks = {view.pick().id for _ in range(len(live))} if live else set()  # type: ignore[union-attr]
        assert picks == live  # round robin reaches every live member


def _fast() -> Any:
    from troupe import Backoff

    return Backoff(initial=0.01, maximum=0.01, jitter="none")


class LateAckFailures(MemoryBroker):
    """The in-memory broker, but a broadcast to a topic named in ``failing`` is queued and
    then fails, as a Kafka batch whose acks fail after the next batch was queued."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    async def broadcast_queued(self, topic: str, messages: Any) -> asyncio.Future[None]:
        if topic not in self.failing:
            return await super().broadcast_queued(topic, messages)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(
            0.05, acked.set_exception, BrokerError(f"acks for {topic} failed")
        )
        return acked


async def test_an_ask_whose_queued_request_fails_later_fails_with_the_broker_error() -> None:
    broker = LateAckFailures()
    async with ActorSystem("server") as server, ActorSystem("client") as client:
        node = await export(server, server.spawn(Echo), "echo", via=broker)
        echo = remote(client, "echo", via=broker)
        assert await echo.ask("first", timeout=5) == "first"
        broker.failing.add(node.inbox)  # requests to the member: queued, then not acked
        with pytest.raises(BrokerError, match=r"acks for troupe\.inbox"):
            await echo.ask("second", timeout=5)
        broker.failing.clear()
        assert await echo.ask("third", timeout=5) == "third"  # the outbox runs on
