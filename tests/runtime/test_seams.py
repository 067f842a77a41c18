"""The bridge seams: deliver with a tracker, mailbox room, reply_expected, take_queued."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from troupe import (
    Actor,
    ActorStopped,
    ActorSystem,
    DeliveryTracker,
    MailboxConfig,
    MessageDropped,
    Queued,
)
from troupe.metrics import FAILED


class Tracker:
    """Records the calls a DeliveryTracker gets, with what the handler had seen by then."""

    def __init__(self, log: list[str], tag: str) -> None:
        self.log = log
        self.tag = tag
        self.errors: list[BaseException | None] = []
        self.retry = False

    def started(self) -> None:
        self.log.append(f"started {self.tag}")

    def finished(self, error: BaseException | None) -> None:
        self.errors.append(error)
        self.log.append(f"finished {self.tag}")


class Recorder(Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def receive(self, message: Any) -> Any:
        self.log.append(f"handled {message}")
        if message == "boom":
            raise ValueError("boom")
        return message


class AsyncRecorder(Recorder):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0)
        return super().receive(message)


@pytest.mark.parametrize("kind", [Recorder, AsyncRecorder])
async def test_deliver_reports_start_then_outcome(kind: type[Recorder]) -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(kind, log)
        ok, bad = Tracker(log, "a"), Tracker(log, "boom")
        tracker: DeliveryTracker = ok  # a plain class satisfies the protocol
        ref.deliver("a", tracker)
        ref.deliver("boom", bad)
        await system.wait_idle(2)
    assert log[:6] == [
        "started a",
        "handled a",
        "finished a",
        "started boom",
        "handled boom",
        "finished boom",
    ]
    assert ok.errors == [None]
    assert len(bad.errors) == 1 and isinstance(bad.errors[0], ValueError)


async def test_deliver_to_a_stopped_actor_finishes_with_actor_stopped() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log)
        await ref.stop()
        tracker = Tracker(log, "late")
        ref.deliver("late", tracker)
    assert log == ["finished late"]
    assert len(tracker.errors) == 1 and isinstance(tracker.errors[0], ActorStopped)


async def test_deliver_dropped_by_the_policy_finishes_with_message_dropped() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log, mailbox=MailboxConfig(1, "drop_oldest"))
        first, second = Tracker(log, "1"), Tracker(log, "2")
        ref.deliver("1", first)
        ref.deliver("2", second)  # pushes "1" out before the actor ran
        await system.wait_idle(2)
    assert len(first.errors) == 1 and isinstance(first.errors[0], MessageDropped)
    assert second.errors == [None]
    assert "started 1" not in log


async def test_deliver_queued_when_killed_finishes_with_actor_stopped() -> None:
    log: list[str] = []
    gate = asyncio.Event()

    class Slow(Actor):
        async def receive(self, message: Any) -> None:
            await gate.wait()

    async with ActorSystem() as system:
        ref = system.spawn(Slow)
        running, queued = Tracker(log, "running"), Tracker(log, "queued")
        ref.deliver(1, running)
        ref.deliver(2, queued)
        await asyncio.sleep(0.01)
        assert log == ["started running"]
        await system.shutdown(timeout=0.01)  # past the deadline: killed mid-handler
    assert len(running.errors) == 1 and isinstance(running.errors[0], ActorStopped)
    assert len(queued.errors) == 1 and isinstance(queued.errors[0], ActorStopped)


async def test_deliver_off_the_loop_thread_is_refused() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, [])
        errors: list[BaseException] = []

        def off_loop() -> None:
            try:
                ref.deliver("x", Tracker([], "x"))
            except RuntimeError as exc:
                errors.append(exc)

        thread = threading.Thread(target=off_loop)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "loop thread" in str(errors[0])


async def test_mailbox_room_counts_queued_and_parked_messages() -> None:
    gate = asyncio.Event()

    class Blocked(Actor):
        async def receive(self, message: Any) -> None:
            await gate.wait()

    async with ActorSystem() as system:
        ref = system.spawn(Blocked, mailbox=MailboxConfig(3))
        assert (ref.mailbox_capacity, ref.mailbox_room) == (3, 3)
        ref.tell(0)
        await asyncio.sleep(0.01)  # 0 is being handled: it left the queue
        assert ref.mailbox_room == 3
        ref.tell(1)
        ref.tell(2)
        assert ref.mailbox_room == 1
        ref.tell(3)
        parked = ref.tell(4)  # backpressure: parked beside the full queue
        assert not parked.done()
        assert ref.mailbox_room == 0
        gate.set()
        await parked
        await system.wait_idle(2)
        assert ref.mailbox_room == 3
        await ref.stop()
        assert ref.mailbox_room == 0


class Batcher(Actor):
    """Handles the current message with up to three queued behind it."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate
        self.batches: list[list[Any]] = []
        self.expected: list[bool] = []

    async def receive(self, message: Any) -> Any:
        await self.gate.wait()
        self.expected.append(self.reply_expected)
        taken = self.take_queued(3)
        self.batches.append([message] + [q.message for q in taken])
        for queued in taken:
            if queued.message == "bad":
                queued.reject(ValueError("bad"))
            else:
                queued.resolve(f"{queued.message}!")
        return f"{message}!"


async def test_take_queued_settles_askers_counts_each_and_admits_parked_senders() -> None:
    gate = asyncio.Event()
    made: list[Batcher] = []

    def batcher() -> Batcher:
        made.append(Batcher(gate))
        return made[-1]

    async with ActorSystem() as system:
        ref = system.spawn(batcher, name="batcher", mailbox=MailboxConfig(3))
        ref.tell("first")
        await asyncio.sleep(0.01)  # "first" is in the handler, waiting at the gate
        asks = [asyncio.ensure_future(ref.ask(m)) for m in ("a", "bad", "c", "d")]
        await asyncio.sleep(0.01)  # a, bad, c queued; d parked (backpressure)
        assert ref.mailbox_room == 0
        gate.set()
        results = await asyncio.gather(*asks, return_exceptions=True)
        await system.wait_idle(2)
        assert results[0] == "a!" and results[2] == "c!" and results[3] == "d!"
        assert isinstance(results[1], ValueError)
        assert made[0].batches == [["first", "a", "bad", "c"], ["d"]]  # d admitted on take
        assert made[0].expected == [False, True]
        assert system.metrics is not None
        stats = system.metrics.group("batcher")
        assert stats is not None
        assert stats.handled == 5  # every taken message counted as handled
        assert stats.counts[FAILED] == 1


async def test_take_queued_messages_carry_headers_and_trackers() -> None:
    log: list[str] = []

    class Taker(Actor):
        def __init__(self) -> None:
            self.taken: list[Queued] = []

        def receive(self, message: Any) -> None:
            if message == "take":
                self.taken = self.take_queued(10)
                log.append("took")

    made: list[Taker] = []

    def taker() -> Taker:
        made.append(Taker())
        return made[-1]

    async with ActorSystem() as system:
        ref = system.spawn(taker)
        ref.tell("take")
        tracker = Tracker(log, "t")
        ref.deliver("tracked", tracker, headers={"k": "v"})
        ref.tell("plain")
        await system.wait_idle(2)
        tracked, plain = made[0].taken
        assert (tracked.message, tracked.headers.get("k"), tracked.asked) == ("tracked", "v", True)
        assert (plain.message, plain.headers, plain.asked) == ("plain", {}, False)
        assert log == ["started t", "took"]
        tracked.resolve(None)
        tracked.reject(ValueError("ignored"))  # settled once
        assert tracker.errors == [None]


async def test_unsettled_taken_messages_get_the_handler_error() -> None:
    class Leaky(Actor):
        def receive(self, message: Any) -> None:
            if message == "take":
                self.take_queued(5)
                raise RuntimeError("batch failed")

    async with ActorSystem() as system:
        ref = system.spawn(Leaky)
        ref.tell("queue the asks")  # busy: both asks wait in the mailbox (none inline)
        first = asyncio.ensure_future(ref.ask("take"))
        second = asyncio.ensure_future(ref.ask("behind"))
        done = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "batch failed" in str(r) for r in done)
