"""Chaos scenarios of the delivery contract, run the same way on every broker (``BROKERS``).

Members are consumer processes (``chaos_member.py``) killed with SIGKILL; on the memory
broker, which lives in one process, a member is a bridge and its target in the test's
own system, killed without a drain (the running handler is cancelled). Starts and
handlings are counted in a side channel the test owns (files appended by the target),
never in the product's counters. Each scenario asserts: nothing confirmed lost, no
healthy message in the DLQ, a poison message dead-lettered after exactly
``max_deliveries`` starts.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.brokers.chaos_member import ChaosTarget, bridge_options, connect_member, working
from tests.helpers import eventually, written_lines
from troupe import ActorRef, ActorSystem, Child
from troupe.brokers import ConsumerBridge
from troupe.brokers.message import DELIVERIES, ERROR_REASON, Message

MEMBER = Path(__file__).with_name("chaos_member.py")
ROOT = Path(__file__).parent.parent.parent
MAX_DELIVERIES = 2


class Member(Protocol):
    async def ready(self) -> None:
        """Wait until it works (its first handler start; on Kafka: it holds partitions)."""

    def kill(self) -> None:
        """Kill it: no drain, no ack, no cleanup."""


class ProcessMember:
    def __init__(self, process: subprocess.Popen[bytes], side: Path) -> None:
        self.process = process
        self.side = side

    async def ready(self) -> None:
        flag = self.side / f"ready-{self.process.pid}"
        await eventually(lambda: flag.exists() or self.process.poll() is not None, timeout=60)
        assert self.process.poll() is None, f"member died: see {self.side}/member.log"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


class LocalMember:
    def __init__(self, system: ActorSystem, working: asyncio.Task[None]) -> None:
        self.system = system
        self.working = working
        self.target: ActorRef | None = None
        self.bridge: ActorRef | None = None

    async def ready(self) -> None:
        async with asyncio.timeout(60):
            await self.working

    def kill(self) -> None:
        self.working.cancel()
        for ref in (self.bridge, self.target):  # the bridge first: it acks nothing more
            if ref is not None:
                Child.of(ref).kill()


class Cluster:
    """Members of one group on one broker (one host: the journals are shared)."""

    def __init__(self, url: str, tmp: Path, system: ActorSystem | None) -> None:
        self.url = url
        self.stream = f"chaos-{uuid.uuid4().hex[:8]}"
        self.group = "g"
        self.side = tmp / "side"
        self.side.mkdir()
        self.journals = tmp / "journals"
        self.broker = connect_member(url, self.journals)
        self.system = system
        self.members: list[Member] = []

    async def start(self, consumer: str) -> Member:
        if self.system is not None:
            member = self._local(consumer)
        else:
            args = [self.url, self.stream, self.group, consumer, str(self.journals)]
            member = ProcessMember(_spawn([*args, str(MAX_DELIVERIES), str(self.side)]), self.side)
        self.members.append(member)
        return member

    def _local(self, consumer: str) -> LocalMember:
        system = self.system
        assert system is not None
        stats = self.broker.stats.consumer(self.stream, self.group, consumer)
        member = LocalMember(system, asyncio.ensure_future(working(stats)))
        member.target = system.spawn(ChaosTarget, self.side)
        member.bridge = system.spawn(
            ConsumerBridge,
            self.broker,
            self.stream,
            self.group,
            member.target,
            **bridge_options(MAX_DELIVERIES, consumer),
        )
        return member

    async def publish(self, payloads: Sequence[dict[str, Any]]) -> None:
        await self.broker.ensure_group(self.stream, self.group)
        for at in range(0, len(payloads), 200):
            chunk = [self.broker.message(p) for p in payloads[at : at + 200]]
            await self.broker.publish_messages(self.stream, chunk)  # confirmed

    def starts(self) -> dict[int, list[str]]:
        """Side channel: the attempt header of every start, per message."""
        out: dict[int, list[str]] = {}
        for line in _lines(self.side / "starts"):
            n, attempt, _pid = line.split()
            out.setdefault(int(n), []).append(attempt)
        return out

    def handled(self) -> set[int]:
        return {int(line) for line in _lines(self.side / "handled")}

    async def dead(self) -> list[Message]:
        return await self.broker.dead_letters(self.stream)

    async def settled(self, healthy: set[int], poison: set[int]) -> bool:
        """Every healthy message handled or dead-lettered, every poison one dead-lettered."""
        dead = {self.number(m) for m in await self.dead()}
        return (self.handled() | dead) >= healthy and dead >= poison

    def number(self, message: Message) -> int:
        return int(self.broker.serializer.loads(message.body)["n"])


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """A member process (its output in ``member.log`` of the side folder, the last arg)."""
    with open(Path(args[-1]) / "member.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, str(MEMBER), *args], cwd=ROOT, stdout=log, stderr=log
        )


def _lines(path: Path) -> list[str]:
    return [line for line in written_lines(path) if line]


@pytest.fixture
async def cluster(broker_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    system: ActorSystem | None = None
    if broker_url.startswith("memory"):
        system = ActorSystem("chaos")
        await system.__aenter__()
    c = Cluster(broker_url, tmp_path, system)
    try:
        yield c
    finally:
        for member in c.members:
            member.kill()
        if system is not None:
            await system.__aexit__(None, None, None)
        await c.broker.close()


def assert_contract(
    cluster: Cluster, dead: list[Message], healthy: set[int], poison: set[int]
) -> dict[int, list[str]]:
    """Nothing confirmed lost; no healthy message in the DLQ unless a kill caught it in its
    handler MAX_DELIVERIES times (that is the contract: started that often, never finished,
    as the side channel shows); each poison one dead-lettered after exactly MAX_DELIVERIES
    starts (by the side channel and by its DLQ headers)."""
    by_n = {cluster.number(m): m for m in dead}
    starts = cluster.starts()
    handled = cluster.handled()
    caught = {  # killed in its handler at MAX_DELIVERIES kills: rightly dead-lettered
        n for n in set(by_n) & healthy if len(starts.get(n, ())) >= MAX_DELIVERIES
    } - handled
    wrongly = sorted((set(by_n) & healthy) - caught)
    assert wrongly == [], "healthy messages were dead-lettered: " + "; ".join(
        f"{n}: {by_n[n].headers[ERROR_REASON]} (starts seen: {starts.get(n)})" for n in wrongly[:3]
    )
    for n in caught:
        assert by_n[n].headers[DELIVERIES] == str(MAX_DELIVERIES)
    assert healthy - handled - caught == set(), "confirmed messages were lost"
    assert set(by_n) - caught == poison
    assert {n: len(starts[n]) for n in poison} == dict.fromkeys(poison, MAX_DELIVERIES), {
        n: starts[n] for n in poison
    }
    for n in poison:
        assert by_n[n].headers[DELIVERIES] == str(MAX_DELIVERIES)
    return starts


HEALTHY = 800
POISON = {10_000, 10_001, 10_002}
KILLS = 6


@pytest.mark.timeout(150)
async def test_a_crash_loop_over_a_backlog(cluster: Cluster) -> None:
    """The consumer is killed with -9 every 0.5-2 s while it works through a backlog (under
    its own name and new ones): no healthy message reaches the DLQ however often it was
    fetched, delivered or held without starting, and poison still goes after exactly
    ``max_deliveries`` starts (the backstop is tight: ``max_deliveries + 3``)."""
    rng = random.Random(20261207)
    payloads: list[dict[str, Any]] = [{"n": n} for n in range(HEALTHY)]
    for k, n in enumerate(sorted(POISON)):
        payloads.insert(100 + 250 * k, {"n": n, "poison": True})
    await cluster.publish(payloads)
    healthy = set(range(HEALTHY))
    for kill in range(KILLS):
        member = await cluster.start("main" if kill % 2 == 0 else f"temp-{kill}")
        await member.ready()
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        member.kill()
    assert len(cluster.handled()) < HEALTHY, "the backlog ended before the kills: make it longer"
    await cluster.start("final")
    await eventually(lambda: cluster.settled(healthy, POISON), timeout=120, interval=0.5)
    starts = assert_contract(cluster, await cluster.dead(), healthy, POISON)
    assert any(len(starts[n]) > 1 for n in healthy), "no healthy message started twice"


@pytest.mark.timeout(150)
async def test_a_kill_in_the_middle_of_a_start_then_two_members_rejoin(
    cluster: Cluster,
) -> None:
    """A member is killed while a handler runs; two members start together. Whichever of
    them folds the dead member's journal, and whichever gets the message, its count goes
    on from the lost start: attempt 2, then the DLQ after exactly ``max_deliveries``."""
    hang = 1000
    payloads: list[dict[str, Any]] = [{"n": n} for n in range(40)]
    payloads.insert(5, {"n": hang, "hang": True})
    (cluster.side / "hang").touch()
    await cluster.publish(payloads)
    first = await cluster.start("first")
    await eventually(lambda: hang in cluster.starts(), timeout=60)
    first.kill()  # in the middle of the start
    (cluster.side / "hang").unlink()
    await cluster.start("second")
    await cluster.start("third")
    healthy = set(range(40))
    await eventually(lambda: cluster.settled(healthy, {hang}), timeout=90, interval=0.5)
    starts = assert_contract(cluster, await cluster.dead(), healthy, {hang})
    assert starts[hang] == ["1", "2"]
