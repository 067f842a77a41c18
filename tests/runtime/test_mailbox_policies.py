"""Overflow policies drop, reject or dead-letter exactly what they say.

Backpressure loses nothing.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import (
    Actor,
    ActorSystem,
    ConfigError,
    MailboxConfig,
    MailboxFull,
    MessageDropped,
)


class Gate(Actor):
    """Blocks on its first message until the gate opens, then records everything."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.seen: list[object] = []

    async def receive(self, message: object) -> object:
        if message == "hold":
            await self.gate.wait()
            return None
        if message == "report":
            return list(self.seen)
        self.seen.append(message)
        return None


@pytest.mark.parametrize(
    ("policy", "expect"),
    [
        ("drop_newest", lambda c, n: list(range(min(n, c)))),
        ("drop_oldest", lambda c, n: list(range(max(0, n - c), n))),
        ("reject", lambda c, n: list(range(min(n, c)))),
        ("dead_letter", lambda c, n: list(range(min(n, c)))),
    ],
)
@given(capacity=st.integers(1, 20), sent=st.integers(0, 60))
async def test_policy_counts_match(policy: str, expect, capacity: int, sent: int) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()
    rejected = 0
    async with ActorSystem("t") as system:
        ref = system.spawn(Gate, gate, mailbox=MailboxConfig(capacity, policy))  # type: ignore[arg-type]
        ref.tell("hold")
        await asyncio.sleep(0)
        for i in range(sent):
            try:
                ref.tell(i)
            except MailboxFull as exc:
                assert exc.capacity == capacity
                rejected += 1
        gate.set()
        assert await system.wait_idle(5)
        seen = await ref.ask("report")
    overflow = max(0, sent - capacity)
    assert seen == expect(capacity, sent)
    if policy == "reject":
        assert rejected == overflow
        assert system.dropped == 0
    elif policy == "dead_letter":
        assert system.dead_letters.by_reason["mailbox full"] == overflow
        dead = [letter.message for letter in system.dead_letters.recent]
        assert dead == list(range(capacity, sent))
    else:
        assert system.dropped == overflow
        assert rejected == 0


async def test_dropped_ask_fails_at_once_instead_of_timing_out() -> None:
    gate = asyncio.Event()
    async with ActorSystem("t") as system:
        ref = system.spawn(Gate, gate, mailbox=MailboxConfig(1, "drop_newest"))
        ref.tell("hold")
        await asyncio.sleep(0)
        ref.tell("fills the only slot")
        with pytest.raises(MessageDropped):
            await ref.ask("no room", timeout=60)
        gate.set()


class Recorder(Actor):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    async def receive(self, message: object) -> object:
        if message == "report":
            return list(self.seen)
        assert isinstance(message, tuple)
        self.seen.append(message)
        if message[1] % 3 == 0:
            await asyncio.sleep(0)
        return None


@given(
    capacity=st.integers(1, 8),
    producers=st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=6),
    yields=st.lists(st.integers(0, 3), min_size=1, max_size=10),
)
async def test_backpressure_loses_nothing_and_keeps_per_sender_order(
    capacity: int, producers: list[tuple[int, bool]], yields: list[int]
) -> None:
    """Any mix of producers (awaiting the tell or not), any interleaving: every accepted
    message arrives, in order per sender; sends beyond the parking are refused."""
    async with ActorSystem("t") as system:
        ref = system.spawn(Recorder, mailbox=MailboxConfig(capacity, "backpressure"))
        accepted: dict[int, list[int]] = {}

        async def produce(pid: int, count: int, awaits: bool) -> None:
            sent = accepted[pid] = []
            for seq in range(count):
                try:
                    pending = ref.tell((pid, seq))
                except MailboxFull:  # the parking is full too (max_parked = capacity)
                    continue
                sent.append(seq)
                if awaits:
                    await pending
                for _ in range(yields[(pid + seq) % len(yields)]):
                    await asyncio.sleep(0)

        await asyncio.gather(*(produce(p, n, a) for p, (n, a) in enumerate(producers)))
        assert await system.wait_idle(5)
        seen = await ref.ask("report")
    for pid in range(len(producers)):
        assert [seq for p, seq in seen if p == pid] == accepted[pid]
    assert len(seen) == sum(len(sent) for sent in accepted.values())


async def test_awaiting_tell_waits_for_room() -> None:
    gate = asyncio.Event()
    async with ActorSystem("t") as system:
        ref = system.spawn(Gate, gate, mailbox=MailboxConfig(2, "backpressure"))
        ref.tell("hold")
        await asyncio.sleep(0)
        await ref.tell(1)
        await ref.tell(2)
        third = asyncio.ensure_future(ref.tell(3))
        await asyncio.sleep(0.01)
        assert not third.done()  # the mailbox is full: the sender waits
        gate.set()
        await asyncio.wait_for(third, 1)
        assert await ref.ask("report") == [1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"capacity": 0}, "mailbox.capacity"),
        ({"capacity": "10"}, "mailbox.capacity"),
        ({"policy": "drop_everything"}, "mailbox.policy"),
    ],
)
def test_bad_mailbox_config_names_the_setting(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        MailboxConfig(**kwargs)  # type: ignore[arg-type]
