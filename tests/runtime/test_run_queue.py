"""The system's run queue (troupe.run_queue): ready sync actors' turns in one loop callback."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

from troupe import Actor, ActorRef, ActorSystem
from troupe.run_queue import RUN_TURNS

order: list[Any] = []


class Recorder(Actor):
    def receive(self, message: Any) -> Any:
        order.append((self.name, message))
        return message


class Forwarder(Actor):
    """Schedules a plain loop callback, then tells ``target``: which runs first?"""

    def __init__(self, target: ActorRef) -> None:
        self.target = target

    def receive(self, message: Any) -> None:
        asyncio.get_running_loop().call_soon(order.append, "loop callback")
        self.target.tell(message)


async def test_a_tell_from_a_handler_runs_its_target_in_the_same_loop_callback() -> None:
    order.clear()
    async with ActorSystem("rq-hop") as system:
        target = system.spawn(Recorder, name="target")
        forwarder = system.spawn(Forwarder, target)
        forwarder.tell("hop")
        for _ in range(100):
            if len(order) == 2:
                break
            await asyncio.sleep(0)
    # the target's turn ran right after the forwarder's, before the callback it scheduled first
    assert order[:2] == [("target", "hop"), "loop callback"]


async def test_ready_actors_take_turns_and_a_busy_one_goes_to_the_back() -> None:
    order.clear()
    async with ActorSystem("rq-fair", throughput=2) as system:
        a = system.spawn(Recorder, name="a")
        b = system.spawn(Recorder, name="b")
        for i in range(4):
            a.tell(i)
        for i in range(4):
            b.tell(i)
        await asyncio.gather(a.ask("end"), b.ask("end"))
    assert order == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1),
        ("a", 2), ("a", 3), ("b", 2), ("b", 3),
        ("a", "end"), ("b", "end"),
    ]  # fmt: skip


class Bouncer(Actor):
    """Tells the peer in the message until the count runs out (a chain of turns)."""

    def receive(self, message: tuple[ActorRef, ActorRef, int, asyncio.Future[None]]) -> None:
        me, peer, left, done = message
        if left:
            peer.tell((peer, me, left - 1, done))
        else:
            done.set_result(None)


async def test_a_chain_of_turns_yields_to_the_loop_after_a_bounded_run() -> None:
    hops = 40 * RUN_TURNS
    async with ActorSystem("rq-yield") as system:
        ping = system.spawn(Bouncer)
        pong = system.spawn(Bouncer)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while not done.done():
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker is waiting on the loop
        ping.tell((ping, pong, hops, done))
        await done
        await ticker
    # a task woken meanwhile ran at least once per RUN_TURNS turns (or sooner, per time slice)
    assert ticks >= hops // RUN_TURNS - 2
    # ... and not once per hop: turns ran one after another in one callback
    assert ticks < hops // 4


request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class SeesContext(Actor):
    def receive(self, message: Any) -> str | None:
        return request_id.get()


async def test_a_turn_does_not_inherit_the_senders_context() -> None:
    async with ActorSystem("rq-context") as system:
        seer = system.spawn(SeesContext)
        request_id.set("from the sender")
        seer.tell("idle actor: the tell queues its turn")
        asked = seer.ask("?")
        assert await asked is None
