"""W3C trace context: carried through mailboxes, visible to handlers and log records."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import Actor, ActorSystem
from troupe.tracing import (
    TRACEPARENT,
    TraceContext,
    TraceContextFilter,
    current_trace,
    inject,
)

ROOT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
log = logging.getLogger("tests.tracing")


class Recorder(Actor):
    """Replies with (headers, current trace) of what it handled; forwards to ``next``."""

    def __init__(self, forward: Any = None) -> None:
        self.forward = forward

    def receive(self, message: Any) -> Any:
        log.info("handling %r", message)
        if self.forward is not None and message != "report":
            self.forward.tell(message)
        return dict(self.headers), current_trace()


class Collector(Actor):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, TraceContext | None, dict[str, str]]] = []

    async def receive(self, message: Any) -> Any:
        if message == "report":
            return self.seen
        await asyncio.sleep(0)
        self.seen.append((message, current_trace(), dict(self.headers)))
        return None


async def test_handler_sees_the_trace_and_forwards_a_child_span() -> None:
    async with ActorSystem() as system:
        sink = system.spawn(Collector)
        first = system.spawn(Recorder, sink)
        headers, trace = await first.ask("order-1", headers={TRACEPARENT: ROOT})
        assert headers[TRACEPARENT] == ROOT
        assert trace == TraceContext.parse(ROOT)
        seen = await sink.ask("report")
    [(message, child, child_headers)] = seen
    assert message == "order-1"
    assert child is not None and trace is not None
    assert child.trace_id == trace.trace_id  # same trace
    assert child.span_id != trace.span_id  # a new span for the forwarded message
    assert child_headers[TRACEPARENT] == child.header()


async def test_untraced_messages_stay_untraced_when_tracing_is_off() -> None:
    async with ActorSystem() as system:
        sink = system.spawn(Collector)
        first = system.spawn(Recorder, sink)
        headers, trace = await first.ask("plain")
        assert (headers, trace) == ({}, None)
        seen = await sink.ask("report")
    assert seen == [("plain", None, {})]


async def test_tracing_on_starts_a_trace_at_entry() -> None:
    async with ActorSystem(tracing=True) as system:
        sink = system.spawn(Collector)
        first = system.spawn(Recorder, sink)
        headers, trace = await first.ask("plain")
        assert trace is not None and trace.sampled
        assert headers[TRACEPARENT] == trace.header()
        seen = await sink.ask("report")
        other, _ = await first.ask("another")
    assert seen[0][1].trace_id == trace.trace_id
    assert TraceContext.parse(other[TRACEPARENT]).trace_id != trace.trace_id  # type: ignore[union-attr]


async def test_a_bare_message_after_a_traced_one_is_not_traced() -> None:
    async with ActorSystem() as system:
        sink = system.spawn(Collector)
        relay = system.spawn(Recorder, sink)
        relay.tell("traced", headers={TRACEPARENT: ROOT})
        relay.tell("bare")  # same dispatch turn as the traced one
        await relay.ask("report")
        seen = await sink.ask("report")
    assert [(m, t is not None) for m, t, _ in seen] == [("traced", True), ("bare", False)]


class SlowStart(Collector):
    async def on_start(self) -> None:
        await asyncio.sleep(0.01)


class Spawner(Actor):
    def receive(self, message: Any) -> Any:
        return self.spawn(SlowStart)


async def test_bare_messages_do_not_inherit_the_trace_of_whoever_scheduled_the_actor() -> None:
    async with ActorSystem() as system:
        spawner = system.spawn(Spawner)
        # spawned inside a traced handler: its start task (and the turn it schedules)
        # begin in that handler's context
        child = await spawner.ask("spawn", headers={TRACEPARENT: ROOT})
        child.tell("bare-1")  # queued while it starts
        child.tell("bare-2")
        seen = await child.ask("report")
    assert [(m, t) for m, t, _ in seen] == [("bare-1", None), ("bare-2", None)]


async def test_interleaved_async_handlers_keep_their_own_traces() -> None:
    traces = [TraceContext.new() for _ in range(5)]

    class Slow(Actor):
        async def receive(self, message: int) -> Any:
            await asyncio.sleep(0.001 * (5 - message))
            return current_trace()

    async with ActorSystem() as system:
        actors = [system.spawn(Slow) for _ in traces]
        results = await asyncio.gather(
            *(
                ref.ask(i, headers={TRACEPARENT: ctx.header()})
                for i, (ref, ctx) in enumerate(zip(actors, traces, strict=True))
            )
        )
    assert [r.trace_id for r in results] == [t.trace_id for t in traces]


async def test_log_records_carry_the_trace_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(TraceContextFilter())
    async with ActorSystem() as system:
        ref = system.spawn(Recorder)
        with caplog.at_level(logging.INFO, logger="tests.tracing"):
            await ref.ask("traced", headers={TRACEPARENT: ROOT})
            await ref.ask("bare")
    records = {r.getMessage(): r for r in caplog.records if r.name == "tests.tracing"}
    assert records["handling 'traced'"].trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # type: ignore[attr-defined]
    assert records["handling 'traced'"].span_id == "00f067aa0ba902b7"  # type: ignore[attr-defined]
    assert records["handling 'bare'"].trace_id == ""  # type: ignore[attr-defined]


async def test_inject_adds_the_current_trace_to_broker_headers() -> None:
    class Publisher(Actor):
        def receive(self, message: Any) -> Any:
            return inject({"content-type": "application/json"})

    async with ActorSystem() as system:
        ref = system.spawn(Publisher)
        headers = await ref.ask("go", headers={TRACEPARENT: ROOT})
        bare = await ref.ask("go")
    assert headers["content-type"] == "application/json"
    assert TraceContext.parse(headers[TRACEPARENT]).trace_id == ROOT[3:35]  # type: ignore[union-attr]
    assert bare == {"content-type": "application/json"}


async def test_an_invalid_traceparent_is_not_propagated() -> None:
    async with ActorSystem() as system:
        sink = system.spawn(Collector)
        relay = system.spawn(Recorder, sink)
        _, trace = await relay.ask("x", headers={TRACEPARENT: "00-zz-00-01"})
        seen = await sink.ask("report")
    assert trace is None
    assert seen == [("x", None, {})]


hex_digits = "0123456789abcdef"


@given(
    trace_id=st.text(hex_digits, min_size=32, max_size=32),
    span_id=st.text(hex_digits, min_size=16, max_size=16),
    flags=st.text(hex_digits, min_size=2, max_size=2),
)
def test_traceparent_round_trip(trace_id: str, span_id: str, flags: str) -> None:
    header = f"00-{trace_id}-{span_id}-{flags}"
    parsed = TraceContext.parse(header.upper())
    if set(trace_id) == {"0"} or set(span_id) == {"0"}:
        assert parsed is None  # all-zero ids are invalid
        return
    assert parsed is not None
    assert parsed.header() == header
    assert parsed.sampled == bool(int(flags, 16) & 1)
    child = parsed.child()
    assert child.trace_id == trace_id and child.flags == flags
    assert len(child.span_id) == 16 and child.span_id != "0" * 16


@given(st.text(max_size=60))
def test_parse_never_raises(text: str) -> None:
    parsed = TraceContext.parse(text)
    assert parsed is None or TraceContext.parse(parsed.header()) == parsed


async def test_thread_actor_handlers_see_and_forward_the_trace() -> None:
    from troupe import ThreadActor

    class Blocking(ThreadActor):
        def __init__(self, forward: Any) -> None:
            self.forward = forward

        def receive(self, message: Any) -> Any:
            self.forward.tell(message)  # from the actor's own thread
            return current_trace()

    async with ActorSystem() as system:
        sink = system.spawn(Collector)
        blocking = system.spawn(Blocking, sink)
        trace = await blocking.ask("work", headers={TRACEPARENT: ROOT})
        await asyncio.sleep(0.05)
        seen = await sink.ask("report")
    assert trace == TraceContext.parse(ROOT)
    [(_, child, _)] = seen
    assert child is not None and child.trace_id == ROOT[3:35]


class Hop(Actor):
    """Forwards ("id", hops left) to the next relay, or records its trace at the end."""

    def __init__(self, relays: list[Any], log: dict[int, str | None]) -> None:
        self.relays = relays
        self.log = log

    def receive(self, message: tuple[int, int]) -> None:
        ident, hops = message
        if hops == 0:
            trace = current_trace()
            self.log[ident] = trace.trace_id if trace is not None else None
        else:
            self.relays[(ident + hops) % len(self.relays)].tell((ident, hops - 1))


class AsyncHop(Hop):
    async def receive(self, message: tuple[int, int]) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().receive(message)


@given(
    kinds=st.lists(st.booleans(), min_size=1, max_size=4),
    entries=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=25),
)
async def test_interleaved_chains_never_mix_traces(
    kinds: list[bool], entries: list[tuple[bool, int]]
) -> None:
    log: dict[int, str | None] = {}
    relays: list[Any] = []
    expected: dict[int, str | None] = {}
    async with ActorSystem() as system:
        relays.extend(system.spawn(AsyncHop if k else Hop, relays, log) for k in kinds)
        for ident, (traced, hops) in enumerate(entries):
            if traced:
                ctx = TraceContext.new()
                expected[ident] = ctx.trace_id
                relays[ident % len(relays)].tell((ident, hops), headers={TRACEPARENT: ctx.header()})
            else:
                expected[ident] = None
                relays[ident % len(relays)].tell((ident, hops))
        assert await system.wait_idle(10)
    assert log == expected


class Witness(Actor):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any, dict[str, str]]] = []

    def receive(self, message: Any) -> Any:
        if message == "report":
            return self.seen
        self.seen.append((message, self.sender, dict(self.headers)))
        return None


async def test_sender_and_headers_do_not_leak_to_the_next_message() -> None:
    async with ActorSystem() as system:
        witness = system.spawn(Witness)
        other = system.spawn(Witness)
        witness.tell("with", sender=other, headers={"k": "v"})
        witness.tell("bare")  # handled in the same turn
        seen = await witness.ask("report")
    assert seen == [("with", other, {"k": "v"}), ("bare", None, {})]
