"""Supervisor behaviour, one rule per test, on a virtual clock."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from supervision_helpers import (
    Crash,
    Journal,
    StartCrash,
    ThreadWorker,
    Worker,
    leftovers,
    no_pykka_threads,
    settle,
)

from troupe import Actor, ActorSystem, Child, State, Terminated, VirtualClock
from troupe.supervisors import (
    Backoff,
    ChildSpec,
    Directive,
    RestartIntensityExceeded,
    SupervisorRequestError,
    SupervisorSpec,
    decider,
    start_child,
    start_supervisor,
    terminate_child,
    which_children,
)


def workers(journal: Journal, *names: str, restart: str = "permanent") -> list[ChildSpec]:
    return [ChildSpec(Worker, (journal,), name=n, restart=restart) for n in names]  # type: ignore[arg-type]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def crash(system: ActorSystem, clock: VirtualClock, name: str, seconds: float = 0) -> None:
    system.lookup(name).tell("crash")
    await settle(clock, seconds)


# -- start and stop order ------------------------------------------------------------------


async def test_children_start_in_order_and_stop_in_reverse(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a", "b", "c"), name="root")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        assert journal.events == [("start", "a"), ("start", "b"), ("start", "c")]
        journal.events.clear()
    assert journal.events == [("stop", "c"), ("stop", "b"), ("stop", "a")]


async def test_a_child_started_again_keeps_its_place_in_the_stop_order(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a", "b", "c"), name="root")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        system.lookup("a").tell("exit")  # permanent: started again as a new actor
        await settle(clock)
        assert journal.starts("a") == 2
        journal.events.clear()
    assert journal.events == [("stop", "c"), ("stop", "b"), ("stop", "a")]


# -- strategies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", {"b"}),
        ("one_for_all", {"a", "b", "c"}),
        ("rest_for_one", {"b", "c"}),
    ],
)
async def test_strategy_restarts_the_right_siblings(
    clock: VirtualClock, strategy: str, restarted: set[str]
) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a", "b", "c"), name="root", strategy=strategy)
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        await crash(system, clock, "b")
        assert {n for n in "abc" if journal.starts(n) == 2} == restarted
        assert all(journal.starts(n) == 1 for n in "abc" if n not in restarted)


async def test_group_restart_drops_temporary_siblings(clock: VirtualClock) -> None:
    journal = Journal()
    children = [
        *workers(journal, "a"),
        *workers(journal, "tmp", restart="temporary"),
        *workers(journal, "c"),
    ]
    spec = SupervisorSpec(children, name="root", strategy="one_for_all")
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        await crash(system, clock, "c")
        assert [c.name for c in await which_children(root)] == ["a", "c"]
        assert system.find("tmp") is None
        assert journal.starts("a") == journal.starts("c") == 2


async def test_restart_keeps_the_ref_and_the_pending_mailbox(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=1,
                          backoff=Backoff(1, 1, jitter="none"))  # fmt: skip
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        ref = system.lookup("a")
        ref.tell("crash")  # restarted at once
        ref.tell("crash")  # the second in a row: a crash loop, restarted after 1 s
        for i in range(3):
            ref.tell(i)
        await settle(clock)
        assert Child.of(ref).state is State.SUSPENDED  # waiting out the backoff
        await settle(clock, 1)
        assert system.lookup("a") == ref and ref.is_alive
        assert journal.handled == [("a", 3, 0), ("a", 3, 1), ("a", 3, 2)]


# -- restart types ---------------------------------------------------------------------------


async def test_transient_child_is_not_restarted_after_a_normal_exit(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "t", restart="transient"), name="root")
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        await crash(system, clock, "t")
        assert journal.starts("t") == 2  # restarted after a failure
        system.lookup("t").tell("exit")
        await settle(clock)
        assert system.find("t") is None
        assert await which_children(root) == []


async def test_permanent_child_is_started_again_after_a_normal_exit(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "p"), name="root")
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        old = system.lookup("p")
        old.tell("exit")
        await settle(clock)
        new = system.lookup("p")
        assert new != old and not old.is_alive and journal.starts("p") == 2
        [info] = await which_children(root)
        assert info.ref == new and info.restarts == 1


async def test_temporary_child_is_never_restarted(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "t", "keep", restart="temporary"), name="root")
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        await crash(system, clock, "t")
        assert system.find("t") is None and journal.starts("t") == 1
        assert [c.name for c in await which_children(root)] == ["keep"]


# -- directives ------------------------------------------------------------------------------


async def test_resume_keeps_state_and_drops_the_failing_message(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a"), name="root", decider=decider({Crash: "resume"}))
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        ref = system.lookup("a")
        ref.tell("x")
        await crash(system, clock, "a")
        assert await ref.ask("count") == 1
        assert journal.starts("a") == 1


async def test_stop_directive_stops_only_that_child_and_tells_watchers(
    clock: VirtualClock,
) -> None:
    journal = Journal()
    spec = SupervisorSpec(
        workers(journal, "a", "b"),
        name="root",
        strategy="one_for_all",
        decider=lambda exc: Directive.STOP,
    )
    notices: list[Terminated] = []
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        system.watch(system.lookup("a"), notices.append)
        await crash(system, clock, "a")
        assert [type(n.reason) for n in notices] == [Crash]
        assert [c.name for c in await which_children(root)] == ["b"]
        assert journal.starts("b") == 1


class Parent(Actor):
    """A plain actor (no on_child_failure): failures of its children go to the guardian."""

    def receive(self, message: Any) -> Any:
        return self.spawn(message[0], message[1], name=message[2])


async def test_escalate_fails_the_supervisor_and_its_parent_restarts_the_subtree(
    clock: VirtualClock,
) -> None:
    journal = Journal()
    inner = SupervisorSpec(workers(journal, "x", "y"), name="inner", decider=lambda e: "escalate")
    outer = SupervisorSpec([inner, *workers(journal, "z")], name="outer")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, outer)
        old_x = system.lookup("x")
        await crash(system, clock, "y")
        assert journal.starts("x") == journal.starts("y") == 2
        assert journal.starts("z") == 1
        assert system.lookup("x") != old_x  # a restarted supervisor starts fresh children
        assert Child.of(system.lookup("inner")).restarts == 1


async def test_a_failed_supervisor_is_restarted_even_when_the_decider_says_resume(
    clock: VirtualClock,
) -> None:
    journal = Journal()
    inner = SupervisorSpec(workers(journal, "x"), name="inner", decider=lambda e: "escalate")
    outer = SupervisorSpec([inner], name="outer", decider=decider({Crash: "resume"}))
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, outer)
        await crash(system, clock, "x")
        assert Child.of(system.lookup("inner")).restarts == 1
        assert Child.of(system.lookup("x")).state is State.RUNNING
        assert journal.starts("x") == 2


# -- intensity -------------------------------------------------------------------------------


async def test_supervisor_fails_when_a_child_keeps_failing_past_the_limit(
    clock: VirtualClock,
) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a", "b"), name="root", max_restarts=2, within=10)
    system = ActorSystem(clock=clock)
    with pytest.raises(RestartIntensityExceeded, match="child 'a' failed 5 times in a row"):
        async with system:
            await start_supervisor(system, spec)
            for _ in range(5):  # failures that each follow a handled message: never a loop
                await crash(system, clock, "a")
                await crash(system, clock, "b")
                await system.lookup("a").ask("count")  # handled: the run of failures ends
                await system.lookup("b").ask("count")
            assert system.failure is None
            for _ in range(4):  # 2 at once, 2 after the (zero) backoff
                await crash(system, clock, "a")
            assert system.failure is None
            await crash(system, clock, "a", 1)  # the fifth in a row
            assert isinstance(system.failure, RestartIntensityExceeded)
            assert system.failure.child == "a" and isinstance(system.failure.cause, Crash)
            await asyncio.wait_for(system.shutdown(), 10)
    assert system.actors() == []
    assert ("stop", "b") in journal.events and ("stop", "a") in journal.events


async def test_restarts_outside_the_window_do_not_count(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=1, within=5)
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        for _ in range(4):
            await crash(system, clock, "a", 5)
        assert system.failure is None and journal.starts("a") == 5


async def test_nested_supervisor_giving_up_is_restarted_by_its_parent(clock: VirtualClock) -> None:
    journal = Journal()
    inner = SupervisorSpec(workers(journal, "x"), name="inner", max_restarts=0, within=5)
    outer = SupervisorSpec([inner], name="outer", max_restarts=3, within=5)
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, outer)
        await crash(system, clock, "x")
        assert system.failure is None
        inner_cell = Child.of(system.lookup("inner"))
        assert inner_cell.restarts == 1 and isinstance(inner_cell.actor, Actor)
        assert journal.starts("x") == 2


async def test_a_child_that_keeps_failing_to_start_makes_the_supervisor_give_up(
    clock: VirtualClock,
) -> None:
    journal = Journal(fail_start={"a"})
    spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=3, within=5)
    system = ActorSystem(clock=clock)
    with pytest.raises(RestartIntensityExceeded) as caught:
        async with system:
            spec.spawn(system)
            await settle(clock)
            await asyncio.wait_for(system.shutdown(), 10)
    assert isinstance(caught.value.cause, StartCrash)
    assert journal.starts("a") == 4  # the first start and three restarts


# -- backoff ---------------------------------------------------------------------------------


async def test_backoff_delays_are_exact_and_reset_after_a_quiet_period(clock: VirtualClock) -> None:
    journal = Journal()
    backoff = Backoff(initial=1, maximum=4, multiplier=2, jitter="none", reset_after=30)
    spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=4, within=30,
                          backoff=backoff)  # fmt: skip
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        ref = system.lookup("a")
        cell = Child.of(ref)
        for _ in range(4):  # the first max_restarts in a row: at once
            ref.tell("crash")
            await settle(clock)
            assert clock.next_deadline() is None and cell.state is State.RUNNING
        delays = []
        for _ in range(4):  # then the crash loop backs off
            ref.tell("crash")
            await settle(clock)
            deadline = clock.next_deadline()
            assert deadline is not None
            delays.append(deadline - clock.now())
            await settle(clock, delays[-1] - 0.001)
            assert cell.state is State.SUSPENDED  # not a moment early
            await settle(clock, 0.001)
            assert cell.state is State.RUNNING
        assert delays == pytest.approx([1, 2, 4, 4], abs=1e-9)
        await settle(clock, 30)  # quiet for `within`: a new run, at once again
        ref.tell("crash")
        await settle(clock)
        assert clock.next_deadline() is None
        assert cell.state is State.RUNNING and journal.starts("a") == 10


async def test_one_for_all_siblings_wait_out_the_backoff_too(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a", "b"), name="root", strategy="one_for_all",
                          max_restarts=1, backoff=Backoff(2, 2, jitter="none"))  # fmt: skip
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        await crash(system, clock, "a")  # at once: both restart
        assert journal.starts("a") == journal.starts("b") == 2
        await crash(system, clock, "a", 1)  # the second in a row: 2 s backoff, for both
        assert Child.of(system.lookup("b")).state is State.SUSPENDED
        assert journal.starts("b") == 2
        await settle(clock, 1)
        assert journal.starts("a") == journal.starts("b") == 3


# -- pools -----------------------------------------------------------------------------------


class Greeter(Actor):
    def __init__(self, greeting: str, who: str, *, punctuation: str = "!") -> None:
        self.text = f"{greeting}, {who}{punctuation}"

    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Crash()
        return self.text


async def test_simple_one_for_one_pool_starts_restarts_and_terminates(clock: VirtualClock) -> None:
    template = ChildSpec(Greeter, ("hello",), name="greeter", kwargs={"punctuation": "."})
    spec = SupervisorSpec([template], name="pool", strategy="simple_one_for_one")
    async with ActorSystem(clock=clock) as system:
        pool = await start_supervisor(system, spec)
        assert await which_children(pool) == []
        ann = await start_child(pool, "ann")
        bob = await start_child(pool, "bob", name="bob", punctuation="?")
        assert await ann.ask("hi") == "hello, ann."
        assert await bob.ask("hi") == "hello, bob?"
        ann.tell("crash")
        await settle(clock)
        assert await ann.ask("hi") == "hello, ann."  # restarted with its own args
        assert Child.of(ann).restarts == 1 and Child.of(bob).restarts == 0
        await terminate_child(pool, ann)
        assert not ann.is_alive
        assert [c.name for c in await which_children(pool)] == ["bob"]
        with pytest.raises(SupervisorRequestError, match="no child"):
            await terminate_child(pool, "nobody")
        with pytest.raises(SupervisorRequestError, match="pass args, not a spec"):
            await start_child(pool, spec=template)


async def test_static_supervisor_takes_new_child_specs(clock: VirtualClock) -> None:
    journal = Journal()
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, SupervisorSpec(workers(journal, "a"), name="root"))
        await start_child(root, spec=workers(journal, "b")[0])
        assert [c.name for c in await which_children(root)] == ["a", "b"]
        with pytest.raises(SupervisorRequestError, match="already has a child"):
            await start_child(root, spec=workers(journal, "b")[0])
        with pytest.raises(SupervisorRequestError, match="pass a ChildSpec"):
            await start_child(root, "x")


# -- shutdown deadlines ----------------------------------------------------------------------


class Stubborn(Actor):
    """Its on_stop never finishes."""

    def receive(self, message: Any) -> None:
        return None

    async def on_stop(self) -> None:
        await asyncio.Event().wait()


async def test_child_past_its_shutdown_deadline_is_killed(clock: VirtualClock) -> None:
    spec = SupervisorSpec([ChildSpec(Stubborn, name="s", shutdown=2)], name="root")
    async with ActorSystem(clock=clock) as system:
        root = await start_supervisor(system, spec)
        ref = system.lookup("s")
        stopping = asyncio.ensure_future(terminate_child(root, "s"))
        await settle(clock, 1.9)
        assert ref.is_alive and not stopping.done()
        await settle(clock, 0.1)
        assert not ref.is_alive
        await stopping


# -- thread actors ---------------------------------------------------------------------------


async def test_thread_actor_children_are_supervised_like_any_actor(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec([ChildSpec(ThreadWorker, (journal,), name="tw")], name="root")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        ref = system.lookup("tw")
        first = await ref.ask("where")
        ref.tell("crash")
        pending = ref.ask("where")
        second = await pending
        assert first != second  # a fresh instance on a fresh thread
        assert system.lookup("tw") == ref and journal.starts("tw") == 2
    assert await no_pykka_threads()


# -- after the tree stops --------------------------------------------------------------------


async def test_nothing_of_the_tree_is_left_after_it_stops(clock: VirtualClock) -> None:
    journal = Journal()
    inner = SupervisorSpec([ChildSpec(ThreadWorker, (journal,), name="tw")], name="inner")
    spec = SupervisorSpec([*workers(journal, "a"), inner], name="root",
                          backoff=Backoff(5, 5, jitter="none"))  # fmt: skip
    system = ActorSystem(clock=clock)
    async with system:
        await start_supervisor(system, spec)
        await system.lookup("tw").ask("x")
        system.lookup("a").tell("crash")  # leaves a restart pending on the clock
        await settle(clock)
        await system.shutdown(timeout=0.2)
        left = leftovers(system)
        assert left["actors"] == [] and left["tasks"] == []
    assert await no_pykka_threads()


# -- backoff, property-based ---------------------------------------------------------------


@given(
    gaps=st.lists(st.sampled_from([0.0, 0.5, 2.0, 7.0, 25.0]), min_size=1, max_size=8),
    initial=st.sampled_from([0.25, 1.0]),
    multiplier=st.sampled_from([1.0, 2.0, 3.0]),
    span=st.sampled_from([1, 8]),
    jitter=st.sampled_from(["none", "equal", "full"]),
    reset_after=st.sampled_from([5.0, 20.0]),
)
def test_backoff_between_restarts_stays_in_bounds_and_resets_after_quiet(
    gaps: list[float],
    initial: float,
    multiplier: float,
    span: int,
    jitter: str,
    reset_after: float,
) -> None:
    backoff = Backoff(initial, initial * span, multiplier, jitter, reset_after)  # type: ignore[arg-type]
    at_once = (len(gaps) + 1) // 2  # max_restarts: the run never goes past 2 x max_restarts

    async def scenario() -> None:
        clock = VirtualClock()
        journal = Journal()
        spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=at_once,
                              within=reset_after, backoff=backoff)  # fmt: skip
        async with ActorSystem(clock=clock, shutdown_timeout=0.5) as system:
            await start_supervisor(system, spec)
            cell = Child.of(system.lookup("a"))
            in_row, last = 0, None
            for gap in gaps:
                await settle(clock, gap)
                now = clock.now()
                if last is not None and now - last >= reset_after:
                    in_row = 0  # quiet for `within`: a new run
                in_row, last = in_row + 1, now
                await crash(system, clock, "a")
                deadline = clock.next_deadline()
                delay = 0.0 if deadline is None else deadline - now
                if in_row <= at_once:
                    assert delay == 0.0
                else:
                    low, high = backoff.bounds(in_row - at_once - 1)
                    assert low - 1e-9 <= delay <= high + 1e-9
                    if jitter == "none":
                        assert delay == pytest.approx(backoff.ceiling(in_row - at_once - 1))
                await settle(clock, delay)
                assert cell.state is State.RUNNING
            assert journal.starts("a") == len(gaps) + 1

    asyncio.run(scenario())


async def test_a_root_that_gives_up_stops_with_the_error_as_its_reason(clock: VirtualClock) -> None:
    journal = Journal()
    spec = SupervisorSpec(workers(journal, "a"), name="root", max_restarts=0)
    notices: list[Terminated] = []
    system = ActorSystem(clock=clock)
    with pytest.raises(RestartIntensityExceeded):
        async with system:
            root = await start_supervisor(system, spec)
            system.watch(root, notices.append)
            await crash(system, clock, "a")
            await asyncio.wait_for(system.shutdown(), 10)
    assert [type(n.reason) for n in notices] == [RestartIntensityExceeded]
