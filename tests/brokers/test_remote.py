"""Remote actors across processes on every broker: tell, ask, refs in messages, members
killed with kill -9 during asks and while holding told messages, and ``watch`` of a remote
name.

Members are real OS processes (``remote_member.py``) on Redis, RabbitMQ and Kafka;
on the in-memory broker (one process by nature) they are actor systems of the test
process, and kill -9 is a node that stops without a word.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers.remote_member import HEARTBEAT, serve
from tests.helpers import eventually, written_lines
from troupe import Actor, ActorSystem, AskTimeout, SystemClosed, Terminated
from troupe.actors import (
    LeaseExpired,
    MemberLost,
    NoMembers,
    RemoteError,
    RemoteRef,
    remote,
    remote_node,
)
from troupe.brokers import Broker

pytestmark = pytest.mark.broker

MEMBER = Path(__file__).with_name("remote_member.py")
NAME = "orders.service"


class Member:
    """One member exporting NAME: a process (real brokers) or a system in this process."""

    who: str

    async def kill(self) -> None:
        """Die at once, saying nothing (kill -9)."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Shut down cleanly."""
        raise NotImplementedError


class ProcessMember(Member):
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.who = str(process.pid)

    @classmethod
    async def start(cls, url: str, log: Path) -> ProcessMember:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(MEMBER),
            url,
            NAME,
            str(log),
            stdout=asyncio.subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line.startswith(b"ready"), line
        return cls(process)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), 30)


class LocalMember(Member):
    def __init__(self, system: ActorSystem, broker: Broker, who: str) -> None:
        self.system = system
        self.broker = broker
        self.who = who

    @classmethod
    async def start(cls, broker: Broker, log: Path, who: str) -> LocalMember:
        system = ActorSystem(f"member-{who}")
        system.start()
        await serve(system, broker, NAME, str(log), who)
        return cls(system, broker, who)

    async def kill(self) -> None:
        if self.system.is_running:
            await remote_node(self.system, self.broker).close(leave=False)
            await self.system.shutdown(timeout=0.5)

    async def stop(self) -> None:
        await self.system.shutdown()


class Cluster:
    """Starts members for a test and stops what is left at its end."""

    def __init__(self, broker: Broker, url: str, log: Path) -> None:
        self.broker = broker
        self.url = url
        self.log = log
        self.members: list[Member] = []

    async def start(self, count: int = 1) -> list[Member]:
        if self.url == "memory://":
            made: list[Member] = [
                await LocalMember.start(self.broker, self.log, f"m{len(self.members) + i}")
                for i in range(count)
            ]
        else:
            made = list(
                await asyncio.gather(
                    *(ProcessMember.start(self.url, self.log) for _ in range(count))
                )
            )
        self.members += made
        return made

    def runs(self, op: str) -> list[tuple[str, str]]:
        """(member, id) of every handler start of ``op``, from the members' log."""
        lines = [line.split() for line in written_lines(self.log)]
        return [(who, ident) for who, kind, ident in lines if kind == op]


@pytest.fixture
async def cluster(broker: Broker, broker_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(broker, broker_url, tmp_path / "runs.log")
    try:
        yield made
    finally:
        for member in made.members:
            await member.kill()


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem("client", ask_timeout=20.0) as made:
        yield made


class Inbox(Actor):
    def __init__(self, box: list[Any]) -> None:
        self.box = box

    def receive(self, message: Any) -> None:
        self.box.append(message)


async def test_tell_and_ask_across_processes(
    cluster: Cluster, system: ActorSystem, broker: Broker
) -> None:
    members = await cluster.start(2)
    remote_node(system, broker, heartbeat=HEARTBEAT)
    orders = remote(system, NAME, via=broker)
    await eventually(lambda: len(remote_node(system, broker).view(NAME).live()) == 2, timeout=10)
    # asks: answered, shared by both members (in turn), a remote exception named
    answers = await asyncio.gather(*(orders.ask({"op": "echo", "id": i}) for i in range(8)))
    assert [a["id"] for a in answers] == list(range(8))
    assert {a["who"] for a in answers} == {m.who for m in members}
    with pytest.raises(RemoteError, match=r"'orders.service' raised KeyError: 'x'") as failed:
        await orders.ask({"op": "fail", "id": "x"})
    assert failed.value.remote_type == "KeyError"
    # tells with a sender: each handled once, acked to the sender in this process
    box: list[Any] = []
    inbox = system.spawn(Inbox, box, name="inbox")
    for i in range(20):
        await orders.tell({"op": "record", "id": i}, sender=inbox)
    await eventually(lambda: len(box) == 20, timeout=20)
    assert sorted(m["ack"] for m in box) == list(range(20))
    assert sorted(int(i) for _, i in cluster.runs("record")) == list(range(20))
    # a ref carried inside a message: the member tells it, it arrives here
    done = await orders.ask({"op": "forward", "id": 99, "to": inbox})
    await eventually(lambda: any(m.get("done") == 99 for m in box), timeout=10)
    assert done["id"] == 99


async def test_order_timeouts_and_no_members(
    cluster: Cluster, system: ActorSystem, broker: Broker
) -> None:
    remote_node(system, broker, heartbeat=HEARTBEAT)
    nobody = remote(system, "nobody.here", via=broker)
    with pytest.raises(NoMembers, match=r"no live member exports 'nobody\.here'"):
        await nobody.ask({"op": "echo"}, timeout=10)
    await cluster.start(1)
    orders = remote(system, NAME, via=broker)
    # order per sender and target: told messages, and asks, reach the member as sent
    box: list[Any] = []
    inbox = system.spawn(Inbox, box, name="inbox")
    for i in range(10):
        orders.tell({"op": "record", "id": i}, sender=inbox)
    await asyncio.gather(*(orders.ask({"op": "echo", "id": i}) for i in range(10)))
    await eventually(lambda: len(box) == 10, timeout=20)
    assert [int(i) for _, i in cluster.runs("record")] == list(range(10))
    assert [int(i) for _, i in cluster.runs("echo")] == list(range(10))
    with pytest.raises(AskTimeout, match=r"'orders\.service' did not reply within 0\.3 s"):
        await orders.ask({"op": "slow", "s": 2, "id": 1}, timeout=0.3)
    with pytest.raises(TypeError, match="cannot travel to a remote actor"):
        orders.ask({"op": "echo", "id": object()})


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "at-most-once"])
async def test_member_killed_during_asks(
    cluster: Cluster, system: ActorSystem, broker: Broker, idempotent: bool
) -> None:
    first, second = await cluster.start(2)
    remote_node(system, broker, heartbeat=HEARTBEAT)
    orders = remote(system, NAME, via=broker)
    await orders.ask({"op": "echo"})  # both members known
    await eventually(lambda: len(remote_node(system, broker).view(NAME).live()) == 2, timeout=10)
    asks = [
        asyncio.ensure_future(orders.ask({"op": "slow", "s": 0.4, "id": i}, idempotent=idempotent))
        for i in range(6)
    ]
    await eventually(lambda: {w for w, _ in cluster.runs("slow")} == {first.who, second.who})
    await first.kill()
    results = await asyncio.gather(*asks, return_exceptions=True)
    answered = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, BaseException)]
    runs = cluster.runs("slow")
    if idempotent:
        assert not lost, lost
        assert [r["id"] for r in results if isinstance(r, dict)] == list(range(6))
        assert {r["who"] for r in answered} == {second.who}
    else:
        assert len(lost) == 3 and all(isinstance(e, MemberLost) for e in lost), results
        assert "not retried" in str(lost[0])
        assert {r["who"] for r in answered} == {second.who}
        ids = [i for _, i in runs]
        assert len(ids) == len(set(ids))  # never run twice
        assert {str(r["id"]) for r in answered} == {i for w, i in runs if w == second.who}


async def test_tells_survive_a_member_killed_while_it_holds_them(
    cluster: Cluster, system: ActorSystem, broker: Broker
) -> None:
    """Told messages go through the delivery contract: when a member is killed with
    kill -9 holding a share of them, the other member handles that share. Every message
    is handled, only what the killed member had started may run twice, and the survivor's
    replies (tells to a ref carried in the message) all arrive."""
    members = await cluster.start(2)
    remote_node(system, broker, heartbeat=HEARTBEAT)
    orders = remote(system, NAME, via=broker)
    await eventually(lambda: len(remote_node(system, broker).view(NAME).live()) == 2, timeout=10)
    box: list[Any] = []
    inbox = system.spawn(Inbox, box, name="inbox")
    total = 300
    for i in range(total):
        orders.tell({"op": "record", "id": i, "s": 0.01}, sender=inbox)

    def handled_by(member: Member) -> int:
        return sum(w == member.who for w, _ in cluster.runs("done"))

    # the member that holds them (on Kafka one sender's tells share a partition: one member)
    await eventually(lambda: max(handled_by(m) for m in members) >= 10)
    victim = max(members, key=handled_by)
    survivor = next(m for m in members if m is not victim)
    await victim.kill()
    everything = set(range(total))
    await eventually(lambda: {int(i) for _, i in cluster.runs("done")} == everything, timeout=90)
    started = cluster.runs("record")
    by_victim = {int(i) for w, i in started if w == victim.who}
    assert by_victim != everything  # it was killed holding some
    twice = {int(i) for _, i in started if sum(1 for _, j in started if j == i) > 1}
    assert twice <= by_victim, twice - by_victim  # a redelivery only after the crash
    assert everything - by_victim <= {int(i) for w, i in started if w == survivor.who}
    by_survivor = {int(i) for w, i in cluster.runs("done") if w == survivor.who}
    await eventually(lambda: by_survivor <= {m["ack"] for m in box if m["who"] == survivor.who})


async def test_a_tell_from_a_closed_node_fails_instead_of_vanishing(broker: Broker) -> None:
    async with ActorSystem("gone") as gone:
        node = remote_node(gone, broker, heartbeat=HEARTBEAT)
        orders = remote(gone, NAME, via=broker)  # an exported name: through its stream
        actor = RemoteRef(node, inbox="troupe.inbox.elsewhere", actor="worker")  # an inbox
        await node.close()
        for ref in (orders, actor):
            with pytest.raises(SystemClosed, match=r"remote node of system 'gone' is closed"):
                ref.tell({"op": "echo"})


async def test_watch_remote_name(cluster: Cluster, system: ActorSystem, broker: Broker) -> None:
    first, second = await cluster.start(2)
    remote_node(system, broker, heartbeat=HEARTBEAT)
    orders = remote(system, NAME, via=broker)
    await eventually(lambda: len(remote_node(system, broker).view(NAME).live()) == 2, timeout=10)
    notices: list[Terminated] = []
    orders.watch(notices.append)
    await first.stop()  # leaves cleanly: one member is left, no notice
    await eventually(lambda: len(remote_node(system, broker).view(NAME).live()) == 1, timeout=10)
    assert (await orders.ask({"op": "echo"}))["who"] == second.who
    assert notices == []
    await second.kill()  # kill -9 of the last member: Terminated once its lease ran out
    await eventually(lambda: len(notices) == 1, timeout=10)
    assert notices[0].ref == orders
    assert isinstance(notices[0].reason, LeaseExpired)
    with pytest.raises(NoMembers):
        await orders.ask({"op": "echo"})
    late: list[Terminated] = []
    orders.watch(late.append)  # watching a name with no member: told at once
    assert len(late) == 1
