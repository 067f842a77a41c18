"""The system's middleware chain: handling and ask hooks, order, skip, and handler_hook as one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import eventually
from troupe import Actor, ActorSystem, ConfigError, Middleware, MiddlewareChain, SkipMessage
from troupe.hooks import Handler


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        return message


class AsyncEcho(Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0)
        if message == "boom":
            raise ValueError("boom")
        return message


class Log(Middleware):
    """Appends what each hook saw to a shared list, tagged with its own name."""

    def __init__(self, name: str, log: list[tuple[Any, ...]]) -> None:
        self.name = name
        self.log = log

    def before_process(self, actor: Actor, message: Any) -> None:
        self.log.append((self.name, "before", message))
        if message == "skip":
            raise SkipMessage("not this one")

    def after_process(
        self, actor: Actor, message: Any, result: Any, error: BaseException | None
    ) -> None:
        self.log.append((self.name, "after", message, result, type(error).__name__))

    def before_ask(self, target: Any, message: Any, headers: dict[str, str]) -> None:
        headers[f"x-{self.name}"] = "1"

    def after_ask(
        self,
        target: Any,
        message: Any,
        headers: dict[str, str],
        result: Any,
        error: BaseException | None,
    ) -> None:
        self.log.append((self.name, "asked", message, result, sorted(headers)))


class Upper(Middleware):
    """Wraps handlers: the message reaches the handler upper-cased."""

    def wrap_handler(self, actor: Actor, handler: Handler) -> Handler:
        return lambda message: handler(message.upper())


@pytest.mark.parametrize("actor", [Echo, AsyncEcho])
async def test_process_hooks_run_in_order_and_after_hooks_in_reverse(actor: type[Actor]) -> None:
    log: list[tuple[Any, ...]] = []
    async with ActorSystem(middleware=[Log("a", log), Log("b", log)]) as system:
        ref = system.spawn(actor)
        assert await ref.ask("hi") == "hi"
        with pytest.raises(ValueError):
            await ref.ask("boom")
        assert await ref.ask("skip") is None  # skipped: never reached the handler
        assert await ref.ask("again") == "again"  # the actor was not failed by the skip
    process = [entry for entry in log if entry[1] in ("before", "after")]
    assert process[:4] == [
        ("a", "before", "hi"),
        ("b", "before", "hi"),
        ("b", "after", "hi", "hi", "NoneType"),
        ("a", "after", "hi", "hi", "NoneType"),
    ]
    assert process[4:8] == [
        ("a", "before", "boom"),
        ("b", "before", "boom"),
        ("b", "after", "boom", None, "ValueError"),
        ("a", "after", "boom", None, "ValueError"),
    ]
    assert process[8:] == [
        ("a", "before", "skip"),  # a skipped, so b never saw it and no after hook ran
        ("a", "before", "again"),
        ("b", "before", "again"),
        ("b", "after", "again", "again", "NoneType"),
        ("a", "after", "again", "again", "NoneType"),
    ]


async def test_ask_hooks_add_headers_and_see_the_outcome() -> None:
    log: list[tuple[Any, ...]] = []

    class Headers(Actor):
        def receive(self, message: Any) -> Any:
            return sorted(k for k in self.headers if k.startswith("x-"))

    async with ActorSystem(middleware=[Log("a", log), Log("b", log)]) as system:
        ref = system.spawn(Headers)
        assert await ref.ask("q") == ["x-a", "x-b"]
    asked = [entry for entry in log if entry[1] == "asked"]
    assert [entry[0] for entry in asked] == ["b", "a"]  # after hooks: reverse order
    assert asked[0][3] == ["x-a", "x-b"]


async def test_wrap_handler_and_handler_hook_compose_with_the_hook_innermost() -> None:
    seen: list[Any] = []

    def hook(actor: Actor, handler: Handler) -> Handler:
        def handle(message: Any) -> Any:
            seen.append(message)
            return handler(message)

        return handle

    async with ActorSystem(middleware=[Upper()], handler_hook=hook) as system:
        ref = system.spawn(Echo)
        assert await ref.ask("hi") == "HI"
    assert seen == ["HI"]  # the hook sits inside Upper: it saw the changed message


async def test_a_restarted_actor_is_wrapped_again() -> None:
    class Crash(Actor):
        def receive(self, message: Any) -> Any:
            if message == "CRASH":
                raise RuntimeError("crash")
            return message

    async with ActorSystem(middleware=[Upper()]) as system:
        ref = system.spawn(Crash)
        for _ in range(3):
            ref.tell("crash")  # reaches the handler upper-cased, and fails it
        await eventually(lambda: system.cell_of(ref).restarts >= 1)
        assert await ref.ask("x") == "X"


async def test_no_middleware_leaves_the_handler_unwrapped() -> None:
    chain = MiddlewareChain()
    handler = Echo.receive
    assert not chain
    assert chain.wrap(None, handler) is handler  # type: ignore[arg-type]
    noop = MiddlewareChain([Middleware()])  # overrides nothing: nothing to call
    assert noop.wrap(None, handler) is handler  # type: ignore[arg-type]
    assert noop.before_process == () and noop.before_deliver == ()
    async with ActorSystem() as system:
        assert not system.ask_hooks
        ref = system.spawn(Echo)
        cell = system.cell_of(ref)
        assert getattr(cell, "_receive").__func__ is Echo.receive  # noqa: B009


def test_middleware_must_be_middleware() -> None:
    with pytest.raises(ConfigError, match="middleware"):
        ActorSystem(middleware=[object()])  # type: ignore[list-item]


async def test_an_audit_log_sees_every_told_message() -> None:
    audit: list[Any] = []

    class Audit(Middleware):
        def after_process(
            self, actor: Actor, message: Any, result: Any, error: BaseException | None
        ) -> None:
            audit.append((actor.name, message, error is None))

    async with ActorSystem(middleware=[Audit()]) as system:
        ref = system.spawn(Echo, name="echo")
        for i in range(5):
            ref.tell(i)
        await eventually(lambda: len(audit) == 5)
    assert audit == [("echo", i, True) for i in range(5)]


def test_the_module_example_runs() -> None:
    import doctest

    from troupe import middleware

    result = doctest.testmod(middleware)
    assert result.failed == 0 and result.attempted > 0
