"""Bounded however a message is sent; timeouts cover the whole ask; no silent no-ops.

The rule under test (README, "Bounded mailboxes"): a ``backpressure`` mailbox
parks at most ``max_parked`` messages (default: its capacity) beside a full
queue; one more ``tell``/``ask`` raises ``MailboxFull``. So queued + parked
never exceeds ``capacity + max_parked``, and every message that was accepted
is handled exactly once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from troupe import (
    Actor,
    ActorRef,
    ActorSystem,
    AskTimeout,
    ConfigError,
    MailboxConfig,
    MailboxFull,
    SyncActorSystem,
    VirtualClock,
)


class Gated(Actor):
    """Handles one message per token released (async receive), recording each."""

    def __init__(self, tokens: asyncio.Semaphore, check: Any) -> None:
        self.tokens = tokens
        self.check = check
        self.seen: list[Any] = []

    async def receive(self, message: Any) -> Any:
        await self.tokens.acquire()
        self.check()
        self.seen.append(message)
        return message


class Forwarder(Actor):
    """A sync handler that tells without awaiting (it cannot await)."""

    def __init__(self, target: ActorRef, accepted: list[Any], refused: list[Any]) -> None:
        self.target = target
        self.accepted = accepted
        self.refused = refused

    def receive(self, batch: list[Any]) -> None:
        for message in batch:
            try:
                self.target.tell(message)
            except MailboxFull:
                self.refused.append(message)
            else:
                self.accepted.append(message)


def _load(system: ActorSystem, ref: ActorRef) -> int:
    mailbox = system.cell_of(ref).mailbox
    return len(mailbox) + mailbox.waiting


asks = st.tuples(st.just("ask"), st.sampled_from([None, 1.0, 4.0]), st.integers(1, 3))
ops = st.one_of(
    st.tuples(st.just("tell"), st.booleans(), st.integers(1, 5)),
    asks,
    asks,
    st.tuples(st.just("thread"), st.just(False), st.integers(1, 3)),
    st.tuples(st.just("timer"), st.sampled_from([0.0, 2.0]), st.integers(1, 3)),
    st.tuples(st.just("forward"), st.just(False), st.integers(1, 6)),
    st.tuples(st.just("release"), st.just(False), st.integers(0, 6)),
    st.tuples(st.just("yield"), st.just(False), st.integers(0, 3)),
    st.tuples(st.just("advance"), st.just(False), st.integers(1, 3)),  # the virtual clock
)


@given(
    capacity=st.integers(1, 5),
    max_parked=st.one_of(st.none(), st.integers(0, 5)),
    steps=st.lists(ops, min_size=4, max_size=30),
)
async def test_queued_plus_parked_stays_bounded_and_nothing_accepted_is_lost(
    capacity: int, max_parked: int | None, steps: list[tuple[str, Any, int]]
) -> None:
    bound = capacity + (capacity if max_parked is None else max_parked)
    accepted: list[Any] = []  # tells that returned (awaited or not), timers not dead-lettered
    refused: list[Any] = []  # MailboxFull
    replied: list[Any] = []
    timed_out: list[Any] = []
    withdrawn: list[Any] = []  # asks that timed out while still parked
    timers: list[Any] = []
    highest = 0
    tokens = asyncio.Semaphore(0)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
    tasks: list[asyncio.Future[Any]] = []
    serial = iter(range(1_000_000))

    clock = VirtualClock()
    async with ActorSystem("bounds", clock=clock) as system:
        mailbox = MailboxConfig(capacity, "backpressure", max_parked)

        def check() -> None:
            nonlocal highest
            highest = max(highest, _load(system, ref))
            assert highest <= bound

        ref = system.spawn(Gated, tokens, check, mailbox=mailbox)
        forwarder = system.spawn(Forwarder, ref, accepted, refused)
        letters: list[Any] = []
        system.dead_letters.subscribe(lambda letter: letters.append(letter.message))
        parked = system.cell_of(ref).mailbox

        def tell(message: Any) -> Any:
            try:
                pending = ref.tell(message)
            except MailboxFull:
                refused.append(message)
                return None
            return pending

        async def awaited_tell(message: Any) -> None:
            pending = tell(message)
            if pending is not None:
                await pending
                accepted.append(message)

        async def ask(message: Any, timeout: float | None) -> None:
            try:
                replied.append(await ref.ask(message, timeout=timeout))
            except MailboxFull:
                refused.append(message)
            except AskTimeout:
                timed_out.append(message)
                if any(
                    getattr(item, "message", item) == message for item, _ in parked.waiters or ()
                ):
                    withdrawn.append(message)

        def thread_tells(messages: list[Any]) -> None:
            for message in messages:
                try:
                    ref.tell(message)  # blocks this thread while parked
                except MailboxFull:
                    refused.append(message)
                else:
                    accepted.append(message)

        loop = asyncio.get_running_loop()
        for kind, flag, n in steps:
            if kind == "tell":
                for _ in range(n):
                    message = ("tell", next(serial))
                    if flag:
                        tasks.append(asyncio.ensure_future(awaited_tell(message)))
                    elif tell(message) is not None:
                        accepted.append(message)
            elif kind == "ask":
                for _ in range(n):
                    tasks.append(asyncio.ensure_future(ask(("ask", next(serial)), flag)))
            elif kind == "thread":
                batch = [("thread", next(serial)) for _ in range(n)]
                tasks.append(loop.run_in_executor(pool, thread_tells, batch))
            elif kind == "timer":
                for _ in range(n):
                    message = ("timer", next(serial))
                    timers.append(message)
                    system.cell_of(ref).timers.once(flag, message)
            elif kind == "forward":
                forwarder.tell([("forward", next(serial)) for _ in range(n)])
            elif kind == "release":
                for _ in range(n):
                    tokens.release()
            elif kind == "advance":
                await clock.advance(float(n))
            for _ in range(n if kind == "yield" else 1):
                await asyncio.sleep(0)
            check()
        await clock.advance(5.0)  # every timer fires, every ask deadline passes
        for _ in range(10_000):
            tokens.release()
        await asyncio.gather(*tasks)
        assert await system.wait_idle(5)
        seen = list(system.cell_of(ref).actor.seen)  # type: ignore[attr-defined]
        pool.shutdown()

    assert highest <= bound
    event(f"full={highest == bound}")
    event(f"refused={bool(refused)}")
    event(f"withdrawn={bool(withdrawn)}")
    event(f"timed_out={bool(timed_out)}")
    accepted += [t for t in timers if t not in letters]  # a timer's overflow is a dead letter
    assert len(seen) == len(set(seen)), "a message was handled twice"
    assert set(accepted) <= set(seen), "an accepted message was lost"
    assert set(replied) <= set(seen)
    assert not set(refused) & set(seen), "a refused message was handled"
    assert not set(withdrawn) & set(seen), "an ask that timed out while parked was handled"
    assert set(seen) <= set(accepted) | set(replied) | set(timed_out)


async def test_unawaited_tells_park_at_most_max_parked() -> None:
    """The 100k un-awaited tells of the issue: 2 queued + 2 parked are held, the rest refused."""
    tokens = asyncio.Semaphore(0)
    async with ActorSystem("t") as system:
        ref = system.spawn(Gated, tokens, lambda: None, mailbox=MailboxConfig(2, "backpressure"))
        ref.tell("first")  # taken by the actor, which then waits for a token
        await asyncio.sleep(0)
        refused = 0
        for i in range(100_000):
            try:
                ref.tell(i)
            except MailboxFull as exc:
                refused += 1
                assert exc.parked == 2 and "2 parked senders" in str(exc)
        assert _load(system, ref) == 4
        assert refused == 100_000 - 4
        for _ in range(10):
            tokens.release()
        assert await system.wait_idle(5)
        assert system.cell_of(ref).actor.seen == ["first", 0, 1, 2, 3]  # type: ignore[attr-defined]


async def test_max_parked_zero_makes_backpressure_refuse_at_capacity() -> None:
    tokens = asyncio.Semaphore(0)
    async with ActorSystem("t") as system:
        mailbox = {"capacity": 1, "max_parked": 0}
        ref = system.spawn(Gated, tokens, lambda: None, mailbox=mailbox)
        ref.tell("held")
        await asyncio.sleep(0)
        ref.tell("queued")
        with pytest.raises(MailboxFull):
            ref.tell("refused")
        with pytest.raises(MailboxFull):
            await ref.ask("refused too")
        tokens.release()
        tokens.release()


@pytest.mark.parametrize("bad", [-1, "2", 1.5, True])
def test_max_parked_is_checked(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"mailbox\.max_parked"):
        MailboxConfig(4, "backpressure", bad)  # type: ignore[arg-type]


async def test_ask_timeout_covers_the_wait_for_mailbox_room() -> None:
    tokens = asyncio.Semaphore(0)
    clock = VirtualClock()
    async with ActorSystem("t", clock=clock) as system:
        ref = system.spawn(
            Gated, tokens, lambda: None, name="slow", mailbox=MailboxConfig(1, "backpressure")
        )
        ref.tell("held")
        await asyncio.sleep(0)
        ref.tell("fills the queue")
        pending = asyncio.ensure_future(ref.ask("parked", timeout=0.2))
        await clock.advance(0.1)
        assert not pending.done()
        await clock.advance(0.2)  # still parked: the deadline counts the wait for room
        assert pending.done()
        with pytest.raises(AskTimeout, match="'slow'"):
            await pending
        for _ in range(5):
            tokens.release()
        assert await system.wait_idle(5)
        # the parked ask whose caller gave up is never handled
        assert system.cell_of(ref).actor.seen == ["held", "fills the queue"]  # type: ignore[attr-defined]


async def test_cancelled_ask_while_parked_is_not_handled() -> None:
    tokens = asyncio.Semaphore(0)
    async with ActorSystem("t") as system:
        ref = system.spawn(Gated, tokens, lambda: None, mailbox=MailboxConfig(1, "backpressure"))
        ref.tell("held")
        await asyncio.sleep(0)
        ref.tell("queued")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ref.ask("parked", timeout=None), 0.05)
        for _ in range(5):
            tokens.release()
        assert await system.wait_idle(5)
        assert system.cell_of(ref).actor.seen == ["held", "queued"]  # type: ignore[attr-defined]


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


def test_ask_and_tell_without_the_running_loop_name_the_sync_api() -> None:
    with SyncActorSystem("sync") as system:
        ref = system.spawn(Echo)
        with pytest.raises(RuntimeError, match=r"SyncActorSystem\.ask"):
            ref.ask("hi")  # plain sync code, no loop: not a coroutine that never runs
        ref.tell("from a foreign thread")  # still supported: the loop runs elsewhere
        assert system.ask(ref, "hi") == "hi"

    loop = asyncio.new_event_loop()
    try:

        async def start() -> ActorRef:
            live = ActorSystem("paused")
            live.start()
            return live.spawn(Echo)

        ref = loop.run_until_complete(start())
        with pytest.raises(RuntimeError, match=r"SyncActorSystem\.tell"):
            ref.tell("on the loop's thread while it is not running")
        with pytest.raises(RuntimeError, match=r"SyncActorSystem\.ask"):
            ref.ask("same")
        errors: list[BaseException] = []

        def from_a_thread() -> None:
            try:
                ref.tell("the loop is stopped: this would wait forever")
            except RuntimeError as exc:
                errors.append(exc)

        sender = threading.Thread(target=from_a_thread)
        sender.start()
        sender.join(10)
        assert len(errors) == 1 and "event loop is not running" in str(errors[0])
    finally:
        loop.close()


async def test_ask_from_another_loop_is_refused() -> None:
    async with ActorSystem("t") as system:
        ref = system.spawn(Echo)

        def elsewhere() -> None:
            async def ask() -> Any:
                return await ref.ask("hi")

            asyncio.run(ask())

        with pytest.raises(RuntimeError, match="not the actor system's event loop"):
            await asyncio.get_running_loop().run_in_executor(None, elsewhere)


async def test_timer_overflow_beyond_parking_is_a_dead_letter() -> None:
    tokens = asyncio.Semaphore(0)
    async with ActorSystem("t") as system:
        mailbox = MailboxConfig(1, "backpressure", max_parked=1)
        ref = system.spawn(Gated, tokens, lambda: None, mailbox=mailbox)
        ref.tell("held")
        await asyncio.sleep(0)
        timers = system.cell_of(ref).timers
        for i in range(4):
            timers.once(0.0, ("tick", i))
        await asyncio.sleep(0.01)
        assert system.dead_letters.by_reason["mailbox full"] == 2
        for _ in range(5):
            tokens.release()
        assert await system.wait_idle(5)
        seen = system.cell_of(ref).actor.seen  # type: ignore[attr-defined]
        assert seen == ["held", ("tick", 0), ("tick", 1)]


class Watcher(Gated):
    def __init__(self, tokens: asyncio.Semaphore, watched: ActorRef) -> None:
        super().__init__(tokens, lambda: None)
        self.watch(watched)


async def test_a_watch_notice_is_never_refused_by_a_full_parking() -> None:
    tokens = asyncio.Semaphore(0)
    async with ActorSystem("t") as system:
        watched = system.spawn(Echo)
        mailbox = MailboxConfig(1, "backpressure", max_parked=0)
        ref = system.spawn(Watcher, tokens, watched, mailbox=mailbox)
        ref.tell("held")
        await asyncio.sleep(0)
        ref.tell("queued")
        await watched.stop()  # its Terminated parks beside the full mailbox
        for _ in range(5):
            tokens.release()
        assert await system.wait_idle(5)
        seen = system.cell_of(ref).actor.seen  # type: ignore[attr-defined]
        assert seen[:2] == ["held", "queued"]
        assert [type(m).__name__ for m in seen[2:]] == ["Terminated"]


class Holder(Actor):
    """Holds its first message until the gate opens; says when it has it."""

    def __init__(self, entered: threading.Event, gate: asyncio.Event) -> None:
        self.entered = entered
        self.gate = gate

    async def receive(self, message: Any) -> Any:
        self.entered.set()
        await self.gate.wait()
        return message


def test_a_thread_tell_past_the_parking_raises_in_that_thread() -> None:
    entered, gate = threading.Event(), asyncio.Event()
    outcome: list[BaseException | None] = []
    with SyncActorSystem("sync") as system:
        ref = system.spawn(Holder, entered, gate, mailbox={"capacity": 1, "max_parked": 0})
        ref.tell("held")
        assert entered.wait(10)
        ref.tell("queued")

        def refused() -> None:
            try:
                ref.tell("refused")  # from a foreign thread: refused at once, not blocked
            except MailboxFull as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        sender = threading.Thread(target=refused)
        sender.start()
        sender.join(10)
        system.loop.call_soon_threadsafe(gate.set)
        sender.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], MailboxFull)
