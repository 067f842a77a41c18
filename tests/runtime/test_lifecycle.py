"""Lifecycle: failed starts, the restart policy of unsupervised actors, escalation
counting, the child handle, and draining a SyncActorSystem at interpreter exit."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from typing import Any, ClassVar

import pytest

from troupe import (
    Actor,
    ActorStopped,
    ActorSystem,
    Backoff,
    Child,
    ConfigError,
    RestartPolicy,
    State,
    VirtualClock,
)
from troupe.metrics import ESCALATIONS, RESTARTS


async def settle(clock: VirtualClock, seconds: float = 0.0) -> None:
    await clock.advance(seconds)
    for _ in range(5):
        await clock.advance(0)


class BadStart(Actor):
    def on_start(self) -> None:
        raise KeyError("no config")

    def receive(self, message: Any) -> Any:
        return message


async def test_a_failed_start_stops_the_actor_and_the_asker_sees_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="troupe")
    async with ActorSystem() as system:
        ref = system.spawn(BadStart, name="bad")
        with pytest.raises(ActorStopped) as caught:
            await ref.ask("hello")
        assert isinstance(caught.value.__cause__, KeyError)
        assert not ref.is_alive
    messages = [r.getMessage() for r in caplog.records]
    assert any("actor bad failed in on_start: KeyError" in m for m in messages), messages
    assert not any("failed on None" in m for m in messages)


class Crashy(Actor):
    restart_policy: ClassVar[RestartPolicy | None] = RestartPolicy(
        max_restarts=2, within=10.0, backoff=Backoff(initial=1.0, maximum=4.0, jitter="none")
    )

    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


async def test_a_failure_restarts_at_once_and_only_a_crash_loop_backs_off_then_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="troupe")
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        ref = system.spawn(Crashy, name="crashy")
        child = Child.of(ref)
        for n in range(1, 4):  # failures after a good run restart at once, however many
            ref.tell("crash")
            assert await ref.ask(n) == n
            assert (child.state, child.restarts) == (State.RUNNING, n)
        ref.tell("crash")  # a run begins: max_restarts=2 failures in a row at once
        ref.tell("crash")
        await settle(clock)
        assert (child.state, child.restarts) == (State.RUNNING, 5)
        ref.tell("crash")  # the third in a row: a crash loop, 1 s backoff
        await settle(clock, 0.5)
        assert (child.state, child.restarts) == (State.SUSPENDED, 5)
        await settle(clock, 0.5)
        assert (child.state, child.restarts) == (State.RUNNING, 6)
        ref.tell("crash")
        await settle(clock, 1.9)
        assert child.restarts == 6  # the second delay is 2 s
        await settle(clock, 0.1)
        assert child.restarts == 7
        ref.tell("crash")  # a fifth in a row: past 2 at once + 2 after backoff
        await settle(clock)
        assert not ref.is_alive
        assert system.stopped_by_policy == 1
        assert system.metrics is not None
        stats = system.metrics.group("crashy")
        assert stats is not None and stats.counts[RESTARTS] == 7
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (
        logging.WARNING,
        "actor crashy is in a crash loop (3 failures in a row); restarts in 1.000 s after "
        "RuntimeError: crash",
    ) in messages
    assert any(
        level == logging.ERROR
        and "actor crashy failed 5 times in a row, the last 2 after backoff" in m
        for level, m in messages
    ), messages


class Plain(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


async def test_the_system_policy_applies_to_top_level_actors_and_children_of_plain_actors() -> None:
    class Parent(Actor):
        def on_start(self) -> None:
            self.kid = self.spawn(Plain, name="kid")

        def receive(self, message: Any) -> Any:
            return self.kid

    clock = VirtualClock()
    policy = RestartPolicy(max_restarts=1, within=5.0, backoff=Backoff.none())
    async with ActorSystem(clock=clock, restart=policy) as system:
        top = system.spawn(Plain, name="top")
        kid = await system.spawn(Parent, name="parent").ask("kid")
        for ref in (top, kid):
            ref.tell("crash")
            await settle(clock)
            assert Child.of(ref).restarts == 1 and await ref.ask("x") == "x"
            ref.tell("crash")  # it ran well: at once again
            await settle(clock)
            assert Child.of(ref).restarts == 2
            ref.tell("crash")  # the second in a row: the crash loop's one backoff restart
            await settle(clock)
            assert Child.of(ref).restarts == 3
            ref.tell("crash")  # the third in a row stops it
            await settle(clock)
            assert not ref.is_alive
        assert system.stopped_by_policy == 2


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: RestartPolicy(max_restarts=-1), "restart.max_restarts"),
        (lambda: RestartPolicy(within=0), "restart.within"),
        (lambda: RestartPolicy(backoff=1.0), "restart.backoff"),  # type: ignore[arg-type]
        (lambda: ActorSystem(restart=3), "restart"),  # type: ignore[arg-type]
    ],
)
def test_bad_restart_settings_are_refused(build: Any, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert caught.value.setting == setting


async def test_a_bad_restart_policy_class_attribute_fails_at_spawn() -> None:
    class Wrong(Plain):
        restart_policy = 3  # type: ignore[assignment]

    async with ActorSystem() as system:
        with pytest.raises(ConfigError) as caught:
            system.spawn(Wrong, name="wrong")
        assert caught.value.setting == "restart_policy"
        assert system.find("wrong") is None


class Overseer(Actor):
    """Handles its children's failures itself: resume, or pass them up."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def on_start(self) -> None:
        self.kid = self.spawn(Plain, name="ward")

    def on_child_failure(self, child: Child, exc: BaseException) -> None:
        self.seen.append(f"{child.name}: {exc}")
        if str(exc) == "escalate":
            Child.of(self.ref).escalate(exc)
        else:
            child.resume()

    def receive(self, message: Any) -> Any:
        return self.kid


class Crasher(Plain):
    def receive(self, message: Any) -> Any:
        if message in ("crash", "escalate"):
            raise RuntimeError(message)
        return message


async def test_only_a_real_escalation_counts_as_one() -> None:
    class Ward(Overseer):
        def on_start(self) -> None:
            self.kid = self.spawn(Crasher, name="ward")

    clock = VirtualClock()
    seen: list[str] = []
    async with ActorSystem(clock=clock, restart=RestartPolicy(backoff=Backoff.none())) as system:
        overseer = system.spawn(Ward, seen, name="overseer")
        ward = await overseer.ask("ward")
        ward.tell("crash")  # handled by the overseer: resumed, no escalation
        await settle(clock)
        assert await ward.ask("ok") == "ok"
        assert system.metrics is not None
        stats = system.metrics.group("overseer")
        assert stats is not None and stats.counts[ESCALATIONS] == 0
        Child.of(overseer).fail(RuntimeError("a linked actor died"))  # a failure, not passed up
        await settle(clock)
        assert stats.counts[ESCALATIONS] == 0 and Child.of(overseer).restarts == 1
        ward = await overseer.ask("ward")
        ward.tell("escalate")  # passed up: counted, and the overseer fails
        await settle(clock)
        assert stats.counts[ESCALATIONS] == 1
        assert Child.of(overseer).restarts == 2  # the system's policy restarted it
    assert seen == ["ward: crash", "ward: escalate"]


async def test_child_handles_list_children_in_order_and_watch_by_ref() -> None:
    class Parent(Actor):
        def on_start(self) -> None:
            for name in ("x", "y", "z"):
                self.spawn(Plain, name=name)

        def receive(self, message: Any) -> Any:
            return None

    async with ActorSystem() as system:
        parent = Child.of(system.spawn(Parent, name="p"))
        await parent.wait_started()
        assert [c.name for c in parent.children()] == ["x", "y", "z"]
        parent.order_children(["z"])
        assert [c.name for c in parent.children()] == ["z", "x", "y"]
        assert [c.name for c in system.top_level()] == ["p"]
        z = parent.children()[0]
        assert z == Child.of(system.lookup("z")) and z.parent == parent.ref
        notices: list[Any] = []
        system.watch(z.ref, notices.append)
        await z.stop(RuntimeError("bye"))
        assert [(n.ref.name, str(n.reason)) for n in notices] == [("z", "bye")]


def test_a_module_level_sync_system_drains_at_interpreter_exit() -> None:
    script = textwrap.dedent(
        """
        import time
        from troupe import Actor, SyncActorSystem

        class Slow(Actor):
            def receive(self, message):
                time.sleep(0.01)
                print("handled", message, flush=True)

            def on_stop(self):
                print("on_stop", flush=True)

        system = SyncActorSystem("app", shutdown_timeout=5)
        ref = system.spawn(Slow)
        for i in range(5):
            system.tell(ref, i)
        print("main done", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert "main done" in lines
    assert [line for line in lines if line.startswith("handled")] == [
        f"handled {i}" for i in range(5)
    ]
    assert lines[-2:] == ["on_stop", ""]


async def test_shutdown_does_not_wait_for_an_actor_backing_off() -> None:
    clock = VirtualClock()  # never advanced: the restart delay never ends
    crash_loop_at_once = RestartPolicy(max_restarts=1, within=10.0)
    async with ActorSystem(clock=clock, restart=crash_loop_at_once) as system:
        ref = system.spawn(Plain)
        ref.tell("crash")  # restarts at once
        ref.tell("crash")  # the second in a row: waits out a backoff
        ref.tell("queued behind the failure")
        await settle(clock)
        assert Child.of(ref).state is State.SUSPENDED
        assert not await system.wait_idle(0.05)  # wait_idle does wait for it
        report = await system.shutdown()
    assert report.seconds < 1 and report.undelivered == 1
    assert not ref.is_alive
    current = asyncio.current_task()
    assert all(t is current or t.done() for t in asyncio.all_tasks())


class Retried:
    """A delivery tracker of a message that failed before (a bridge's redelivery)."""

    retry = True

    def __init__(self, outcomes: list[BaseException | None]) -> None:
        self.outcomes = outcomes

    def started(self) -> None:
        pass

    def finished(self, error: BaseException | None) -> None:
        self.outcomes.append(error)


async def test_failures_of_retried_messages_never_make_a_crash_loop() -> None:
    clock = VirtualClock()
    tight = RestartPolicy(max_restarts=2, within=60.0)
    async with ActorSystem(clock=clock, restart=tight) as system:
        ref = system.spawn(Plain, name="plain")
        outcomes: list[BaseException | None] = []
        for _ in range(30):  # poison coming back for its retries, nothing handled between
            ref.deliver("crash", Retried(outcomes))
        await settle(clock)
        assert len(outcomes) == 30 and all(isinstance(e, RuntimeError) for e in outcomes)
        assert ref.is_alive and Child.of(ref).restarts == 30
        assert clock.next_deadline() is None  # every restart at once
        for _ in range(3):  # fresh messages failing in a row: the third is a crash loop
            ref.tell("crash")
        await settle(clock)
        assert Child.of(ref).state is State.SUSPENDED and clock.next_deadline() is not None


async def test_asks_refused_one_after_another_are_answers_not_a_crash_loop() -> None:
    clock = VirtualClock()
    tight = RestartPolicy(max_restarts=2, within=60.0)
    async with ActorSystem(clock=clock, restart=tight) as system:
        ref = system.spawn(Plain, name="plain")
        for _ in range(30):  # e.g. a payment step declining one order after another
            with pytest.raises(RuntimeError):
                await ref.ask("crash")
        await settle(clock)
        assert ref.is_alive and Child.of(ref).restarts == 30  # every one at once
        assert Child.of(ref).state is State.RUNNING
        assert await ref.ask("fine") == "fine"
