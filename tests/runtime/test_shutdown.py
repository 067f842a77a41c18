"""Shutdown drains within its deadline, reports what it could not deliver, leaves no task."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from troupe import Actor, ActorSystem


class Slow(Actor):
    def __init__(self, done: list[int]) -> None:
        self.done = done

    async def receive(self, message: int) -> None:
        await asyncio.sleep(message / 1000)
        self.done.append(message)


class Relay(Actor):
    """Forwards each message to the next actor: work in flight between actors."""

    def __init__(self, nxt: Any, done: list[int]) -> None:
        self.nxt, self.done = nxt, done

    def receive(self, message: int) -> None:
        if self.nxt is None:
            self.done.append(message)
        else:
            self.nxt.tell(message)


@given(chain=st.integers(1, 6), messages=st.integers(0, 50))
async def test_shutdown_drains_messages_in_flight_between_actors(chain: int, messages: int) -> None:
    done: list[int] = []
    system = ActorSystem()
    async with system:
        nxt = None
        for _ in range(chain):
            nxt = system.spawn(Relay, nxt, done)
        assert nxt is not None
        for i in range(messages):
            nxt.tell(i)
    assert sorted(done) == list(range(messages))
    assert system.actors() == []


async def test_shutdown_past_its_deadline_reports_the_undelivered() -> None:
    done: list[int] = []
    system = ActorSystem()
    async with system:
        ref = system.spawn(Slow, done)
        for _ in range(20):
            ref.tell(1000)  # a second each: 20 s of work
        report = await system.shutdown(timeout=0.25)
    assert not report.drained
    assert report.cancelled == 1  # the handler running at the deadline
    assert done == []
    assert report.undelivered == 19
    assert report.undelivered == system.dead_letters.by_reason["recipient stopped"]
    assert report.seconds < 2


async def test_no_task_is_left_after_shutdown() -> None:
    done: list[int] = []
    system = ActorSystem()
    before = asyncio.all_tasks()
    async with system:
        refs = [system.spawn(Slow, done) for _ in range(50)]
        for ref in refs:
            ref.tell(1)
        await system.shutdown(timeout=0.0)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == before


async def test_spawn_after_shutdown_is_refused() -> None:
    import pytest

    from troupe import SystemClosed

    system = ActorSystem()
    async with system:
        pass
    with pytest.raises(SystemClosed):
        system.spawn(Slow, [])


class Stopper(Actor):
    """Records when its on_stop begins and ends (it takes a moment)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def receive(self, message: Any) -> None:
        pass

    async def on_stop(self) -> None:
        self.log.append(f"begin {self.name}")
        await asyncio.sleep(0.01)
        self.log.append(f"end {self.name}")


class StopperParent(Stopper):
    def on_start(self) -> None:
        self.spawn(Stopper, self.log, name=f"{self.name}.kid")


async def test_top_level_actors_stop_one_after_another_in_reverse_spawn_order() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        system.spawn(Stopper, log, name="a")
        system.spawn(StopperParent, log, name="b")
        system.spawn(Stopper, log, name="c")
        await system.wait_idle(2)
    assert log == [
        "begin c",
        "end c",
        "begin b.kid",  # children first, as a supervisor stops its children
        "end b.kid",
        "begin b",
        "end b",
        "begin a",
        "end a",
    ]


async def test_ordered_shutdown_keeps_one_deadline_for_all() -> None:
    class Stubborn(Actor):
        def receive(self, message: Any) -> None:
            pass

        async def on_stop(self) -> None:
            await asyncio.sleep(10)

    log: list[str] = []
    system = ActorSystem()
    async with system:
        system.spawn(Stopper, log, name="first")
        system.spawn(Stubborn, name="stubborn")  # stops first, overruns the deadline
        report = await system.shutdown(timeout=0.1)
    assert report.seconds < 2
    assert report.cancelled >= 1
    assert system.actors() == []
    assert "end first" not in log  # killed at the deadline: on_stop skipped


class Counted(Actor):
    """Idle, with a plain on_stop that records its name."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def receive(self, message: Any) -> None:
        pass

    def on_stop(self) -> None:
        self.log.append(self.name)


class Hookless(Actor):
    def receive(self, message: Any) -> None:
        pass


async def test_idle_actors_stop_at_once_in_reverse_order_with_every_on_stop() -> None:
    log: list[str] = []
    created: list[Any] = []
    system = ActorSystem()
    async with system:
        for i in range(3000):
            system.spawn(Counted if i % 2 else Hookless, *([log] if i % 2 else []), name=f"a{i}")
        loop = asyncio.get_running_loop()
        real = loop.create_task

        def counting(coro: Any, **kw: Any) -> Any:
            created.append(coro)
            return real(coro, **kw)

        loop.create_task = counting  # type: ignore[method-assign]
        try:
            report = await system.shutdown()
        finally:
            del loop.create_task
    assert log == [f"a{i}" for i in reversed(range(1, 3000, 2))]
    assert created == []  # no task per actor
    assert report.stopped == 3000 and report.killed == report.on_stop_skipped == 0
    assert report.cancelled == 0
    assert system.actors() == []


async def test_a_shutdown_past_its_deadline_reports_exact_counts() -> None:
    class Stubborn(Actor):
        def receive(self, message: Any) -> None:
            pass

        async def on_stop(self) -> None:
            await asyncio.sleep(10)

    log: list[str] = []
    system = ActorSystem()
    async with system:
        system.spawn(Counted, log, name="a")
        system.spawn(Counted, log, name="b")
        system.spawn(Stubborn, name="stubborn")  # its on_stop begins, then the deadline passes
        system.spawn(Hookless, name="c")
        system.spawn(Counted, log, name="d")
        report = await system.shutdown(timeout=0.05)
    assert log == ["d"]  # stopped in order before the deadline
    assert report.stopped == 2  # d and c
    assert report.killed == 3  # stubborn, b, a
    assert report.cancelled == 1  # stubborn's on_stop, in progress
    assert report.on_stop_skipped == 2 and report.skipped == ("a", "b")  # never began
    assert report.drained and report.undelivered == 0
    assert system.actors() == []


async def test_killed_actors_with_queued_work_are_counted_not_all_cancelled() -> None:
    done: list[int] = []
    system = ActorSystem()
    async with system:
        busy = system.spawn(Slow, done, name="busy")
        for _ in range(3):
            busy.tell(1000)
        idle = [system.spawn(Counted, done, name=f"idle{i}") for i in range(50)]
        report = await system.shutdown(timeout=0.05)
    assert report.cancelled == 1  # only the handler that was running
    assert report.killed + report.stopped == 51
    assert report.undelivered == 2
    assert all(not ref.is_alive for ref in idle)


async def test_a_parent_stops_its_idle_children_at_once_last_spawned_first() -> None:
    class Pool(Actor):
        def __init__(self, log: list[str]) -> None:
            self.log = log

        def on_start(self) -> None:
            for i in range(600):
                self.spawn(Counted, self.log, name=f"kid{i}")

        def receive(self, message: Any) -> None:
            pass

    log: list[str] = []
    async with ActorSystem() as system:
        pool = system.spawn(Pool, log, name="pool")
        await system.wait_idle(2)
        await pool.stop()
        assert log == [f"kid{i}" for i in reversed(range(600))]
        assert system.actors() == []


async def test_an_async_on_stop_and_an_awaitable_from_a_plain_one_are_awaited() -> None:
    class AsyncStop(Hookless):
        def __init__(self, log: list[str]) -> None:
            self.log = log

        async def on_stop(self) -> None:
            await asyncio.sleep(0.01)
            self.log.append("async")

    class ReturnsAwaitable(AsyncStop):
        def on_stop(self) -> Any:  # type: ignore[override]
            return AsyncStop.on_stop(self)

    log: list[str] = []
    async with ActorSystem() as system:
        system.spawn(AsyncStop, log)
        system.spawn(ReturnsAwaitable, log)
        report = await system.shutdown()
    assert log == ["async", "async"]
    assert report.stopped == 2 and report.killed == 0


async def test_nothing_of_the_stopped_actors_is_kept_after_shutdown() -> None:
    import gc
    import weakref

    log: list[str] = []
    system = ActorSystem()
    async with system:
        refs = [system.spawn(Counted, log) for _ in range(500)]
        assert all(ref.tell("hello").done() for ref in refs[:100])
        instances = [weakref.ref(system.cell_of(ref).actor) for ref in refs]
        del refs
        await system.wait_idle(2)
    gc.collect()
    assert len(log) == 500
    assert [alive for alive in instances if alive() is not None] == []
