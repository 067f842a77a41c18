"""Pages: ``ActorRef.deliver_page`` (a PageTracker per page) and ``Actor.receive_batch``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from troupe import (
    Actor,
    ActorStopped,
    ActorSystem,
    Child,
    MailboxConfig,
    MailboxFull,
    MessageDropped,
    PageTracker,
    Queued,
)


class Page:
    """Records the calls a PageTracker gets, in order, into a shared log."""

    def __init__(
        self, log: list[str], messages: list[Any], retried: frozenset[int] = frozenset()
    ) -> None:
        self.log = log
        self.messages = messages
        self.retried = retried
        self.errors: dict[int, BaseException | None] = {}
        self.starts: dict[int, int] = {}

    def retry(self, index: int) -> bool:
        return index in self.retried

    def started(self, index: int) -> None:
        self.starts[index] = self.starts.get(index, 0) + 1
        self.log.append(f"started {self.messages[index]}")

    def finished(self, index: int, error: BaseException | None) -> None:
        assert index not in self.errors, "finished twice"
        self.errors[index] = error
        self.log.append(f"finished {self.messages[index]}")


class Recorder(Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def receive(self, message: Any) -> Any:
        self.log.append(f"handled {message} {self.headers.get('n')}")
        if message == "boom":
            raise ValueError("boom")
        return message


class AsyncRecorder(Recorder):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0)
        return super().receive(message)


def items(messages: list[Any]) -> list[tuple[Any, dict[str, str] | None]]:
    return [(m, {"n": str(i)}) for i, m in enumerate(messages)]


@pytest.mark.parametrize("kind", [Recorder, AsyncRecorder])
async def test_a_page_is_handled_one_message_at_a_time_in_order(kind: type[Recorder]) -> None:
    log: list[str] = []
    messages = ["a", "b", "c"]
    async with ActorSystem() as system:
        ref = system.spawn(kind, log)
        page = Page(log, messages)
        tracker: PageTracker = page  # a plain class satisfies the protocol
        ref.deliver_page(items(messages), tracker)
        await system.wait_idle(2)
    assert log == [
        line
        for i, m in enumerate(messages)
        for line in (f"started {m}", f"handled {m} {i}", f"finished {m}")
    ]
    assert page.errors == {0: None, 1: None, 2: None}


@pytest.mark.parametrize("kind", [Recorder, AsyncRecorder])
async def test_a_failure_fails_its_message_only_and_the_rest_runs_after_the_restart(
    kind: type[Recorder],
) -> None:
    log: list[str] = []
    messages = ["a", "boom", "c", "d"]
    async with ActorSystem() as system:
        ref = system.spawn(kind, log)
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(5)
        assert Child.of(ref).restarts == 1
    assert page.starts == {0: 1, 1: 1, 2: 1, 3: 1}  # each started once, in order
    assert [line for line in log if line.startswith("handled")] == [
        "handled a 0",
        "handled boom 1",
        "handled c 2",
        "handled d 3",
    ]
    assert page.errors[0] is None and page.errors[2] is None and page.errors[3] is None
    assert isinstance(page.errors[1], ValueError)
    # the failed message was settled before the next one started
    assert log.index("finished boom") < log.index("started c")


async def test_a_page_to_a_stopped_actor_finishes_every_message_unstarted() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log)
        await ref.stop()
        page = Page(log, ["a", "b"])
        ref.deliver_page(items(["a", "b"]), page)
        await system.wait_idle(2)
    assert page.starts == {}
    assert all(isinstance(e, ActorStopped) for e in page.errors.values()) and len(page.errors) == 2


async def test_a_page_larger_than_the_room_goes_in_one_by_one_and_refusals_finish_unstarted() -> (
    None
):
    log: list[str] = []
    messages = [f"m{i}" for i in range(5)]
    async with ActorSystem() as system:
        ref = system.spawn(
            Recorder, log, mailbox=MailboxConfig(capacity=3, policy="reject"), name="small"
        )
        await system.wait_idle(1)
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(2)
    assert page.starts == {0: 1, 1: 1, 2: 1}
    assert [page.errors[i] for i in range(3)] == [None, None, None]
    assert all(isinstance(page.errors[i], MailboxFull) for i in (3, 4))


async def test_a_page_beyond_a_backpressure_mailbox_parks_up_to_max_parked() -> None:
    log: list[str] = []
    messages = [f"m{i}" for i in range(7)]
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log, mailbox=MailboxConfig(capacity=2, max_parked=3))
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(2)
    assert [page.errors[i] for i in range(5)] == [None] * 5  # 2 queued + 3 parked
    assert [line for line in log if line.startswith("handled")] == [
        f"handled m{i} {i}" for i in range(5)
    ]
    assert all(isinstance(page.errors[i], MailboxFull) for i in (5, 6))
    assert 5 not in page.starts and 6 not in page.starts


async def test_deliver_page_off_the_loop_thread_is_refused() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, [])
        with pytest.raises(RuntimeError, match="loop thread"):
            await asyncio.to_thread(ref.deliver_page, [("a", None)], Page([], ["a"]))


# -- a page in the mailbox (troupe.page_run): every path that takes a message from it ------


class Killer(Recorder):
    """Kills itself on "kill" (a sync handler: the rest of the page is still queued)."""

    def receive(self, message: Any) -> Any:
        if message == "kill":
            Child.of(self.ref).kill()
        return super().receive(message)


class Taker(Recorder):
    """Settles its own message ("own") or takes the next two queued ("take")."""

    def __init__(self, log: list[str], taken: list[Queued]) -> None:
        super().__init__(log)
        self.taken = taken

    def receive(self, message: Any) -> Any:
        if message == "own":
            current = self.take_current()
            assert current is not None and current.headers["n"] == "1"
            current.reject(KeyError("settled by the handler"))
        if message == "take":
            self.taken.extend(self.take_queued(2))
            for queued in self.taken:
                queued.resolve()
        return super().receive(message)


async def test_a_page_and_tells_between_pages_keep_their_order_and_senders() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log)
        other = system.spawn(Recorder, [])
        first, second = Page(log, ["a", "b"]), Page(log, ["c", "d"])
        ref.deliver_page(items(["a", "b"]), first, senders=[other, None])
        ref.tell("t", headers={"n": "tell"})
        ref.deliver_page(items(["c", "d"]), second)
        await system.wait_idle(2)
    assert [line for line in log if line.startswith("handled")] == [
        "handled a 0",
        "handled b 1",
        "handled t tell",
        "handled c 0",
        "handled d 1",
    ]
    assert first.errors == {0: None, 1: None} and second.errors == {0: None, 1: None}


async def test_a_sender_per_message_of_a_page_is_the_handlers_sender() -> None:
    seen: list[Any] = []

    class Senders(Actor):
        def receive(self, message: Any) -> None:
            seen.append((message, self.sender))

    async with ActorSystem() as system:
        ref = system.spawn(Senders)
        other = system.spawn(Recorder, [])
        ref.deliver_page(items(["a", "b"]), Page([], ["a", "b"]), senders=[other, None])
        await system.wait_idle(2)
        with pytest.raises(ValueError, match="1 senders for 2 messages"):
            ref.deliver_page(items(["a", "b"]), Page([], ["a", "b"]), senders=[other])
    assert seen == [("a", other), ("b", None)]


async def test_killed_in_the_middle_of_a_page_the_rest_finishes_unstarted_once_each() -> None:
    log: list[str] = []
    messages = ["a", "kill", "c", "d"]
    async with ActorSystem() as system:
        ref = system.spawn(Killer, log)
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(2)
    assert page.starts == {0: 1, 1: 1}
    assert page.errors[0] is None
    assert all(isinstance(page.errors[i], ActorStopped) for i in (2, 3))
    assert log.index("finished c") < log.index("finished d")


async def test_drop_oldest_drops_the_pages_next_message_and_finishes_it_once() -> None:
    log: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn(Recorder, log, mailbox=MailboxConfig(capacity=3, policy="drop_oldest"))
        await system.wait_idle(1)
        page = Page(log, ["a", "b", "c"])
        ref.deliver_page(items(["a", "b", "c"]), page)  # fills the mailbox
        ref.tell("late")  # drops the oldest queued: the page's "a"
        await system.wait_idle(2)
    assert page.starts == {1: 1, 2: 1}
    assert isinstance(page.errors[0], MessageDropped)
    assert page.errors[1] is None and page.errors[2] is None
    assert [line for line in log if line.startswith("handled")] == [
        "handled b 1",
        "handled c 2",
        "handled late None",
    ]


async def test_a_handler_that_settles_or_takes_page_messages_finishes_each_once() -> None:
    log: list[str] = []
    taken: list[Queued] = []
    messages = ["a", "own", "take", "x", "y", "z"]
    async with ActorSystem() as system:
        ref = system.spawn(Taker, log, taken)
        page = Page(log, messages)  # its finished() asserts each message finishes once
        ref.deliver_page(items(messages), page)
        await system.wait_idle(2)
        assert Child.of(ref).restarts == 0
    assert isinstance(page.errors[1], KeyError)  # what the handler settled it with
    assert [q.message for q in taken] == ["x", "y"]
    assert [q.headers["n"] for q in taken] == ["3", "4"]
    assert all(page.errors[i] is None for i in (0, 2, 3, 4, 5))
    assert [line for line in log if line.startswith("handled")] == [
        "handled a 0",
        "handled own 1",
        "handled take 2",
        "handled z 5",
    ]


# -- receive_batch ---------------------------------------------------------------------------


class BatchWriter(Actor):
    max_batch = 10

    def __init__(self, log: list[str], calls: list[list[tuple[Any, str]]]) -> None:
        self.log = log
        self.calls = calls

    def receive_batch(self, batch: list[Queued]) -> None:
        self.calls.append([(q.message, q.headers.get("n", "")) for q in batch])
        self.log.append(f"batch of {len(batch)}")
        for queued in batch:
            if queued.message == "reject-me":
                queued.reject(KeyError("one item"))
        if any(q.message == "boom" for q in batch):
            raise ValueError("the page failed")


class AsyncBatchWriter(BatchWriter):
    async def receive_batch(self, batch: list[Queued]) -> None:
        await asyncio.sleep(0)
        super().receive_batch(batch)


@pytest.mark.parametrize("kind", [BatchWriter, AsyncBatchWriter])
async def test_receive_batch_gets_the_page_in_one_call_after_every_start(
    kind: type[BatchWriter],
) -> None:
    log: list[str] = []
    calls: list[list[tuple[Any, str]]] = []
    messages = ["a", "b", "reject-me", "c"]
    async with ActorSystem() as system:
        ref = system.spawn(kind, log, calls)
        await system.wait_idle(1)
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(2)
        assert Child.of(ref).restarts == 0
    assert calls == [[("a", "0"), ("b", "1"), ("reject-me", "2"), ("c", "3")]]
    assert log[:5] == ["started a", "started b", "started reject-me", "started c", "batch of 4"]
    assert page.errors[0] is None and page.errors[1] is None and page.errors[3] is None
    assert isinstance(page.errors[2], KeyError)  # settled by the handler: that one only


@pytest.mark.parametrize("kind", [BatchWriter, AsyncBatchWriter])
async def test_a_failed_batch_fails_every_message_of_it_and_the_actor_once(
    kind: type[BatchWriter],
) -> None:
    log: list[str] = []
    calls: list[list[tuple[Any, str]]] = []
    messages = ["a", "boom", "c"]
    async with ActorSystem() as system:
        ref = system.spawn(kind, log, calls)
        await system.wait_idle(1)
        page = Page(log, messages)
        ref.deliver_page(items(messages), page)
        await system.wait_idle(5)
        assert Child.of(ref).restarts == 1
    assert len(calls) == 1
    assert page.starts == {0: 1, 1: 1, 2: 1}
    assert all(isinstance(page.errors[i], ValueError) for i in range(3))


async def test_receive_batch_takes_at_most_max_batch_and_answers_asks_and_tells() -> None:
    log: list[str] = []
    calls: list[list[tuple[Any, str]]] = []
    async with ActorSystem() as system:
        ref = system.spawn(BatchWriter, log, calls)
        await system.wait_idle(1)
        for i in range(12):
            ref.tell(i)
        replies = [ref.ask("q"), ref.ask("q")]
        assert await asyncio.gather(*replies) == [None, None]
        await system.wait_idle(2)
    assert [len(call) for call in calls] == [10, 4]
    assert [m for call in calls for m, _ in call] == [*range(12), "q", "q"]
