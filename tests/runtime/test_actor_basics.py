"""tell/ask, lifecycle hooks, names, dead letters, timers, death watch."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import (
    Actor,
    ActorNotFound,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    ConfigError,
    NameTaken,
    SystemClosed,
    Terminated,
    VirtualClock,
)


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


class AsyncEcho(Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0)
        return message


class Failing(Actor):
    def receive(self, message: Any) -> Any:
        raise KeyError(message)


class Silent(Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.Event().wait()


@pytest.mark.parametrize("cls", [Echo, AsyncEcho])
async def test_ask_returns_what_the_handler_returned(cls: type[Actor]) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(cls)
        assert await ref.ask({"n": 1}) == {"n": 1}


async def test_ask_raises_the_handler_exception() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Failing)
        with pytest.raises(KeyError, match="boom"):
            await ref.ask("boom")


async def test_ask_timeout_names_the_actor() -> None:
    async with ActorSystem(shutdown_timeout=0.1) as system:
        ref = system.spawn(Silent, name="slowpoke")
        with pytest.raises(AskTimeout, match="slowpoke") as info:
            await ref.ask("anything", timeout=0.01)
        assert info.value.timeout == 0.01


async def test_ask_timeout_runs_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock, shutdown_timeout=0.1) as system:
        ref = system.spawn(Silent)
        pending = asyncio.ensure_future(ref.ask("x", timeout=30))
        await clock.advance(29.9)
        assert not pending.done()
        await clock.advance(0.2)
        with pytest.raises(AskTimeout):
            await pending


class Sequencer(Actor):
    """Forwards numbered messages to a sink; used for FIFO across actor senders."""

    def __init__(self, sink: Any, sender_id: int, count: int) -> None:
        self.sink, self.sender_id, self.count = sink, sender_id, count

    async def receive(self, message: Any) -> None:
        for seq in range(self.count):
            self.sink.tell((self.sender_id, seq))
            if seq % (message + 1) == 0:
                await asyncio.sleep(0)


class Sink(Actor):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def receive(self, message: Any) -> Any:
        if message == "report":
            return self.seen
        self.seen.append(message)
        return None


@given(counts=st.lists(st.integers(0, 50), min_size=1, max_size=5), rhythm=st.integers(0, 5))
async def test_fifo_per_sender_receiver_pair(counts: list[int], rhythm: int) -> None:
    async with ActorSystem() as system:
        sink = system.spawn(Sink)
        senders = [system.spawn(Sequencer, sink, i, n) for i, n in enumerate(counts)]
        await asyncio.gather(*(s.ask(rhythm) for s in senders))
        seen = await sink.ask("report")
    for i, n in enumerate(counts):
        assert [seq for sid, seq in seen if sid == i] == list(range(n))


class Lifecycle(Actor):
    log: ClassVar[list[str]] = []

    def __init__(self, tag: str) -> None:
        self.tag = tag

    async def on_start(self) -> None:
        self.log.append(f"start {self.tag}")

    def on_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    def on_restart(self, exc: BaseException) -> None:
        self.log.append(f"restart {self.tag} {exc}")

    def receive(self, message: Any) -> Any:
        if message == "fail":
            raise RuntimeError("asked to")
        return self.ref.name


async def test_lifecycle_hooks_run_in_order_and_restart_keeps_the_ref() -> None:
    Lifecycle.log = []
    async with ActorSystem() as system:
        ref = system.spawn(Lifecycle, "a", name="life")
        assert await ref.ask("who") == "life"
        with pytest.raises(RuntimeError):
            await ref.ask("fail")
        assert await ref.ask("who") == "life"  # same ref, fresh instance
        await ref.stop()
    assert Lifecycle.log == ["start a", "stop a", "restart a asked to", "stop a"]


async def test_names_are_unique_and_lookup_finds_live_actors() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo, name="echo")
        with pytest.raises(NameTaken, match="echo"):
            system.spawn(Echo, name="echo")
        assert system.lookup("echo") == ref
        await system.stop(ref)
        with pytest.raises(ActorNotFound, match="echo"):
            system.lookup("echo")
        assert system.find("echo") is None
        system.spawn(Echo, name="echo")  # the name is free again


async def test_messages_to_stopped_actors_are_dead_letters() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo, name="gone")
        await ref.stop()
        ref.tell("hello")
        with pytest.raises(ActorStopped):
            await ref.ask("anyone?")
        letters = [(d.message, d.recipient, d.reason) for d in system.dead_letters.recent]
        assert letters == [
            ("hello", "gone", "recipient stopped"),
            ("anyone?", "gone", "recipient stopped"),
        ]
        assert system.dead_letters.count == 2


class Ticker(Actor):
    def __init__(self) -> None:
        self.ticks: list[tuple[str, float]] = []

    def on_start(self) -> None:
        self.timers.every(1.0, "tick", key="tick")
        self.timers.once(2.5, "once")

    def receive(self, message: Any) -> Any:
        if message == "report":
            return list(self.ticks)
        if message == "cancel":
            return self.timers.cancel("tick")
        self.ticks.append((message, self.system.clock.now()))
        return None


async def test_timers_fire_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = system.spawn(Ticker)
        await clock.advance(3.0)
        assert await ref.ask("report") == [
            ("tick", 1.0),
            ("tick", 2.0),
            ("once", 2.5),
            ("tick", 3.0),
        ]
        assert await ref.ask("cancel") is True
        await clock.advance(5.0)
        assert len(await ref.ask("report")) == 4


class Watcher(Actor):
    def __init__(self, target: Any) -> None:
        self.target = target
        self.notices: list[Terminated] = []

    def on_start(self) -> None:
        self.watch(self.target)

    def receive(self, message: Any) -> Any:
        if message == "report":
            return self.notices
        self.notices.append(message)
        return None


async def test_death_watch_delivers_terminated() -> None:
    async with ActorSystem() as system:
        target = system.spawn(Echo)
        watcher = system.spawn(Watcher, target)
        await asyncio.sleep(0)
        await target.stop()
        notices = await watcher.ask("report")
        assert len(notices) == 1
        assert notices[0].ref == target and notices[0].reason is None


class Parent(Actor):
    def on_start(self) -> None:
        self.child = self.spawn(Echo, name="child")

    def receive(self, message: Any) -> Any:
        return self.child


async def test_children_stop_with_their_parent() -> None:
    async with ActorSystem() as system:
        parent = system.spawn(Parent)
        child = await parent.ask("child?")
        assert child.is_alive
        await parent.stop()
        assert not child.is_alive


def test_bad_system_settings_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="throughput"):
        ActorSystem(throughput=0)
    with pytest.raises(ConfigError, match="ask_timeout"):
        ActorSystem(ask_timeout=-1)


async def test_spawn_needs_a_started_system_and_an_actor() -> None:
    system = ActorSystem()
    with pytest.raises(SystemClosed, match="not started"):
        system.spawn(Echo)
    async with system:
        with pytest.raises(TypeError, match="not an Actor"):
            system.spawn(lambda: object())  # type: ignore[arg-type, return-value]


async def test_actor_constructed_outside_a_system_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"system\.spawn"):
        _ = Echo().ref


async def test_thousands_of_idle_actors_hold_no_task() -> None:
    async with ActorSystem() as system:
        before = len(asyncio.all_tasks())
        for _ in range(5000):
            system.spawn(AsyncEcho)
        assert len(asyncio.all_tasks()) == before


class Recorder(Actor):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def receive(self, message: int) -> None:
        await asyncio.sleep(0)
        self.seen.append(message)


async def test_stop_jumps_ahead_of_queued_user_messages() -> None:
    seen: list[int] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, seen, name="rec")
        for i in range(100):
            ref.tell(i)
        await asyncio.sleep(0)  # the first turn starts
        await ref.stop()
        assert len(seen) <= 2  # the message in hand finishes; the queue waits no longer
        assert system.dead_letters.by_reason["recipient stopped"] == 100 - len(seen)


async def test_an_actor_sets_the_default_timeout_of_the_asks_it_gets() -> None:
    class Slow(Actor):
        ask_timeout = 0.05

        async def receive(self, message: Any) -> Any:
            await asyncio.sleep(message)
            return message

    class Patient(Slow):
        def __init__(self) -> None:
            self.ask_timeout = None  # an instance may set it too

    async with ActorSystem(ask_timeout=5.0) as system:
        slow, patient = system.spawn(Slow), system.spawn(Patient)
        assert (slow.default_ask_timeout, patient.default_ask_timeout) == (0.05, None)
        with pytest.raises(AskTimeout):
            await slow.ask(0.2)
        assert await slow.ask(0.2, timeout=1.0) == 0.2  # an explicit timeout wins
        assert await patient.ask(0.1) == 0.1
        assert system.spawn(Echo).default_ask_timeout == 5.0
