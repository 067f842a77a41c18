"""An ask to an idle sync actor on the same loop runs in the asker's task (ActorRef.ask).

It must behave as a turn of one message: one message at a time, in order behind
what was queued first, the handler's exception fails the message and the actor
(restarted per the failure model), headers/sender/trace seen by the handler,
metrics counted, and no deadline left armed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from troupe import Actor, ActorSystem, RestartPolicy
from troupe.backoff import Backoff
from troupe.tracing import TRACEPARENT, current_traceparent


class Recorder(Actor):
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.busy = False

    def receive(self, message: Any) -> Any:
        assert not self.busy, "two messages handled at once"
        self.busy = True
        try:
            if message == "ask-self":
                self.ref.tell("told-from-handler")  # queued: runs after this one
            if message == "boom":
                raise ValueError("planned")
            self.log.append((message, dict(self.headers), self.reply_expected))
            return message
        finally:
            self.busy = False


class Count(Actor):
    restart_policy = RestartPolicy(max_restarts=100, within=10.0, backoff=Backoff.none())

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> int:
        if message == "boom":
            raise ValueError("planned")
        self.count += 1
        return self.count


async def warm_until_inline(system: ActorSystem, ref: Any) -> None:
    """Ask ``"warm"`` until an ask ran inline with inline runs left: on a loaded machine a
    handler preempted past the segment bound sends the next ask through the loop (by design,
    as a slow handler does), which is not what these tests look at."""
    for _ in range(100):
        reply = ref.ask("warm")
        inline = reply.done() and system.inline_left > 0
        await reply
        if inline:
            return
    raise AssertionError("no ask ran inline in 100 tries")


async def test_inline_ask_returns_a_done_reply_and_keeps_order() -> None:
    log: list[Any] = []
    async with ActorSystem("inline") as system:
        ref = system.spawn(Recorder, log)
        await warm_until_inline(system, ref)
        reply = ref.ask("first")
        assert reply.done() and reply.result() == "first"  # handled in this task
        ref.tell("queued")
        assert await ref.ask("behind") == "behind"  # not inline: a tell was queued first
        assert [m for m, _, _ in log if m != "warm"] == ["first", "queued", "behind"]
        assert await ref.ask("ask-self") == "ask-self"
        await system.wait_idle(5)
        assert [m for m, _, _ in log][-2:] == ["ask-self", "told-from-handler"]


async def test_inline_ask_failure_fails_the_message_and_restarts_the_actor() -> None:
    async with ActorSystem("inline-fail") as system:
        ref = system.spawn(Count)
        assert await ref.ask(1) == 1
        reply = ref.ask("boom")
        assert reply.done()
        with pytest.raises(ValueError, match="planned"):
            await reply
        assert system.failures == 1
        # restarted per the failure model: a fresh instance
        for _ in range(50):
            if system.restarts == 1:
                break
            await asyncio.sleep(0.01)
        assert system.restarts == 1
        assert await ref.ask(2) == 1


async def test_inline_ask_carries_headers_and_trace_and_restores_the_askers() -> None:
    log: list[Any] = []
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with ActorSystem("inline-trace", tracing=True) as system:
        ref = system.spawn(Recorder, log)
        await warm_until_inline(system, ref)
        token = current_traceparent.set(parent)
        try:
            assert ref.ask("traced", headers={"k": "v"}).done()
            assert current_traceparent.get() == parent  # the asker's trace is back
        finally:
            current_traceparent.reset(token)
        _, headers, expected = log[-1]
        assert headers["k"] == "v" and expected
        assert headers[TRACEPARENT].split("-")[1] == parent.split("-")[1]


async def test_inline_asks_are_counted_in_metrics() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async with ActorSystem("inline-metrics", metrics_port=0) as system:
        ref = system.spawn(Count, name="counted")
        for i in range(10):
            assert ref.ask(i).done()
        with pytest.raises(ValueError):
            await ref.ask("boom")
        assert system.metrics_endpoint is not None
        text = await asyncio.to_thread(_get, system.metrics_endpoint.url)
    samples = {
        (s.name, s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("actor") == "counted"
    }
    assert samples[("troupe_messages_total", "ok")] == 10
    assert samples[("troupe_messages_total", "failed")] == 1
    assert samples[("troupe_handler_seconds_count", None)] == 11


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def test_an_asker_looping_over_inline_asks_lets_the_loop_run() -> None:
    async with ActorSystem("inline-fair") as system:
        ref = system.spawn(Count)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        for _ in range(1000):
            await ref.ask(0)
        task.cancel()
        assert ticks >= 1000 // 65  # one ask in every INLINE_RUN + 1 goes through the loop


async def test_no_inline_ask_for_a_busy_or_async_actor() -> None:
    class Slow(Actor):
        async def receive(self, message: Any) -> Any:
            await asyncio.sleep(0)
            return message

    async with ActorSystem("inline-async") as system:
        ref = system.spawn(Slow)
        reply = ref.ask("x")
        assert not reply.done()
        assert await reply == "x"
