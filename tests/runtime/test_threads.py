"""Thread actors (pykka-backed), adopted pykka actors, and the sync system handle."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pykka
import pytest

from troupe import (
    Actor,
    ActorSystem,
    AskTimeout,
    MailboxConfig,
    SyncActorSystem,
    ThreadActor,
)


class Blocker(ThreadActor):
    def on_start(self) -> None:
        self.started_on = threading.current_thread().name

    def receive(self, message: Any) -> Any:
        if message == "where":
            return threading.current_thread().name, self.started_on
        if message == "fail":
            raise ValueError("thread failure")
        time.sleep(message)
        return message


async def test_thread_actor_runs_blocking_code_off_the_loop() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Blocker)
        where, started_on = await ref.ask("where")
        assert where == started_on != threading.current_thread().name
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        assert await ref.ask(0.2) == 0.2  # blocks its thread, not the loop
        ticker.cancel()
        assert ticks >= 10


async def test_thread_actor_failures_are_raised_and_restart_it() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Blocker)
        first, _ = await ref.ask("where")
        with pytest.raises(ValueError, match="thread failure"):
            await ref.ask("fail")
        second, _ = await ref.ask("where")
        assert second != first  # a fresh instance got a fresh thread


async def test_thread_actor_threads_end_with_the_system() -> None:
    before = {t.ident for t in threading.enumerate()}
    async with ActorSystem() as system:
        refs = [system.spawn(Blocker) for _ in range(5)]
        await asyncio.gather(*(r.ask("where") for r in refs))
    for _ in range(100):
        if {t.ident for t in threading.enumerate()} <= before:
            break
        await asyncio.sleep(0.01)
    assert {t.ident for t in threading.enumerate()} <= before


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        self.count += message
        return self.count


async def test_adopted_pykka_actor_answers_through_a_troupe_ref() -> None:
    pykka_ref = PykkaCounter.start()
    async with ActorSystem() as system:
        ref = system.adopt(pykka_ref, name="legacy")
        assert await ref.ask(2) == 2
        assert await ref.ask(3) == 5
        await ref.stop()
    assert not pykka_ref.is_alive()


class Doubler(Actor):
    def receive(self, message: int) -> int:
        return 2 * message


class Collector(Actor):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, message: Any) -> Any:
        if message == "report":
            return self.seen
        await asyncio.sleep(message if isinstance(message, float) else 0.001)
        self.seen.append(message)
        return None


def test_sync_handle_spawns_tells_asks_and_shuts_down() -> None:
    with SyncActorSystem("app") as system:
        doubler = system.spawn(Doubler, name="doubler")
        assert system.ask(doubler, 21) == 42
        assert system.lookup("doubler") == doubler
        collector = system.spawn(Collector, mailbox=MailboxConfig(2, "backpressure"))
        for i in range(20):  # a full backpressure mailbox blocks this thread
            system.tell(collector, i)
        assert system.ask(collector, "report") == list(range(20))
        system.tell(collector, 0.5)  # takes half a second
        with pytest.raises(AskTimeout):
            system.ask(collector, "report", timeout=0.01)
    assert not system.loop.is_running()


def test_sync_handle_is_safe_from_many_threads() -> None:
    with SyncActorSystem("app") as system:
        collector = system.spawn(Collector)

        def produce(base: int) -> None:
            for i in range(50):
                collector.tell(base + i)  # ActorRef.tell from a foreign thread

        threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seen = system.ask(collector, "report")
    for k in range(4):
        assert [x for x in seen if k * 1000 <= x < (k + 1) * 1000] == [
            k * 1000 + i for i in range(50)
        ]
