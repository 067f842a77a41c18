"""Cross-thread tell/ask go through one intake queue per system: same results, errors and
timeouts as on the loop, no coroutine or task per call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from troupe import (
    Actor,
    ActorStopped,
    AskTimeout,
    ConfigError,
    MailboxFull,
    SyncActorSystem,
    SystemClosed,
)


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        if isinstance(message, Exception):
            raise message
        return message


class Sleepy(Actor):
    async def receive(self, message: float) -> str:
        await asyncio.sleep(message)
        return "late"


class Gate(Actor):
    """Blocks its handler (on its own loop) until the test opens the gate."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    async def receive(self, message: Any) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        return message


@pytest.fixture
def sync() -> Iterator[SyncActorSystem]:
    system = SyncActorSystem("threads", ask_timeout=5.0)
    try:
        yield system
    finally:
        system.shutdown()


@settings(max_examples=10, deadline=None)
@given(threads=st.integers(1, 8), asks=st.integers(1, 60))
def test_asks_from_many_threads_each_get_their_own_replies(threads: int, asks: int) -> None:
    with SyncActorSystem("many") as system:
        echo = system.spawn(Echo)
        results: dict[int, list[Any]] = {}

        def work(index: int) -> None:
            results[index] = [system.ask(echo, (index, i)) for i in range(asks)]

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert results == {t: [(t, i) for i in range(asks)] for t in range(threads)}


def test_a_thread_ask_starts_no_task(sync: SyncActorSystem) -> None:
    echo = sync.spawn(Echo)
    made: list[Any] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kw)

    sync.loop.set_task_factory(counting)  # type: ignore[arg-type]
    assert [sync.ask(echo, i) for i in range(100)] == list(range(100))
    for i in range(100):
        sync.tell(echo, i)
    assert made == []


def test_a_thread_ask_raises_what_an_ask_on_the_loop_raises(sync: SyncActorSystem) -> None:
    echo = sync.spawn(Echo)
    with pytest.raises(KeyError, match="nope"):
        sync.ask(echo, KeyError("nope"))
    sleepy = sync.spawn(Sleepy, name="sleepy")
    began = time.monotonic()
    with pytest.raises(AskTimeout, match="sleepy"):
        sync.ask(sleepy, 5.0, timeout=0.05)
    assert time.monotonic() - began < 2
    with pytest.raises(ConfigError):
        sync.ask(echo, 1, timeout=-1)
    sync.stop(echo)
    with pytest.raises(ActorStopped):
        sync.ask(echo, 1)
    sync.shutdown(timeout=0.1)  # sleepy is still asleep: it is cut off
    with pytest.raises(SystemClosed):
        sync.ask(sleepy, 0.0)


def test_a_thread_ask_to_a_full_reject_mailbox_raises_mailbox_full(
    sync: SyncActorSystem,
) -> None:
    gate = threading.Event()
    gated = sync.spawn(Gate, gate, mailbox={"capacity": 1, "policy": "reject"})
    sync.tell(gated, "busy")  # handled: the handler waits on the gate
    sync.tell(gated, "queued")  # fills the mailbox
    time.sleep(0.05)
    try:
        with pytest.raises(MailboxFull):
            sync.ask(gated, "one too many")
        with pytest.raises(MailboxFull):
            sync.tell(gated, "one too many")
    finally:
        gate.set()
    for _ in range(100):  # the two queued messages drain
        try:
            assert sync.ask(gated, "after") == "after"
            break
        except MailboxFull:
            time.sleep(0.02)
    else:
        raise AssertionError("the mailbox never drained")


def test_a_thread_ask_pending_at_shutdown_gets_actor_stopped() -> None:
    system = SyncActorSystem("closing")
    sleepy = system.spawn(Sleepy)
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            system.ask(sleepy, 10.0, timeout=None)
        except BaseException as exc:
            outcome.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.1)
    report = system.shutdown(timeout=0.1)
    asker.join(5)
    assert not asker.is_alive()
    assert report.cancelled == 1
    assert len(outcome) == 1 and isinstance(outcome[0], ActorStopped)


def _settled_batch(count: int) -> tuple[asyncio.AbstractEventLoop, list[Any]]:
    """``count`` waiters settled by one batch of the intake (its drain run by hand)."""
    from troupe.thread_intake import ThreadIntake, ThreadWaiter

    loop = asyncio.new_event_loop()
    intake = ThreadIntake(loop)
    waiters = [ThreadWaiter() for _ in range(count)]
    for waiter in waiters:
        waiter._intake = intake

    def settle(_: ThreadIntake) -> None:
        for index, waiter in enumerate(waiters):
            waiter.set_result(index)

    intake.submit(settle)
    intake._drain()
    return loop, waiters


def test_a_batch_wakes_its_waiters_in_turn_each_thread_waking_the_next() -> None:
    loop, waiters = _settled_batch(3)
    try:
        assert [w._lock.locked() for w in waiters] == [False, True, True]
        assert waiters[0].wait(loop, lambda: None, 1.0) == 0
        assert [w._lock.locked() for w in waiters[1:]] == [False, True]
        assert waiters[1].wait(loop, lambda: None, 1.0) == 1
        assert waiters[2].wait(loop, lambda: None, 1.0) == 2
    finally:
        loop.close()


def test_a_thread_that_never_waits_delays_the_next_waiter_by_one_poll_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from troupe import thread_intake

    monkeypatch.setattr(thread_intake, "POLL", 0.05)
    loop, waiters = _settled_batch(3)
    try:
        # waiters[0]'s thread went away (interrupted): nobody passes the baton on
        start = time.monotonic()
        assert waiters[1].wait(loop, lambda: None, 5.0) == 1
        assert waiters[2].wait(loop, lambda: None) == 2  # woken by waiters[1]'s thread
        assert time.monotonic() - start < 2.0
    finally:
        loop.close()
