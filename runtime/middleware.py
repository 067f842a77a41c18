"""Middleware: an ordered chain of before_/after_ hooks around what troupe does with a message.

A :class:`Middleware` overrides only the hooks it needs (dramatiq's model). The
chain is given to the system (``ActorSystem(middleware=[...])``) and, for one
bridge, to the bridge (``ConsumerBridge(..., middleware=[...])``, after the
system's). ``before_*`` hooks run in the chain's order, ``after_*`` hooks in
reverse, so the first middleware wraps all the others.

- **Handling** (every actor of the system): :meth:`~Middleware.wrap_handler`
  replaces the handler when an instance is bound (at start and after every
  restart); :meth:`~Middleware.before_process` / :meth:`~Middleware.after_process`
  run around each message. An exception in ``before_process`` fails the message
  as the handler's would; :class:`SkipMessage` there skips it (the sender of an
  ask gets None).
- **Asks**: :meth:`~Middleware.before_ask` may add headers (a trace context);
  :meth:`~Middleware.after_ask` sees the outcome.
- **Producer bridges**: :meth:`~Middleware.before_publish` sees each payload
  and its broker headers (it may add some) before the message is built;
  :meth:`~Middleware.after_publish` the message id or the error.
- **Consumer bridges**: :meth:`~Middleware.before_deliver` runs before a decoded
  payload goes to the target; it may add headers, return a number of seconds to
  hold the message back (a rate limit: the hold counts no attempt) or raise
  :class:`SkipMessage` (acked, never handled; :meth:`~Middleware.after_skip`
  runs). :meth:`~Middleware.after_deliver` sees the handler's outcome,
  :meth:`~Middleware.after_retry` a failed attempt scheduled again and
  :meth:`~Middleware.after_dead_letter` a message sent to the DLQ.
- **Saga steps**: :meth:`~Middleware.before_saga_step` /
  :meth:`~Middleware.after_saga_step` around each action or compensation.

A hook no middleware overrides is never called: with no middleware the
dispatcher's path is unchanged and a bridge tests one empty tuple per message.

>>> from troupe import ActorSystem, Middleware
>>> class Audit(Middleware):
...     def __init__(self) -> None:
...         self.seen = []
...     def after_process(self, actor, message, result, error):
...         self.seen.append((actor.name, message, error))
>>> system = ActorSystem(middleware=[Audit()])
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .actor import is_async_callable
from .hooks import Handler, HandlerHook

if TYPE_CHECKING:
    from .actor import Actor
    from .ref import ActorRef


class SkipMessage(Exception):  # dramatiq's name, which Python users know
    """Raised by ``before_process`` or ``before_deliver``: skip this message, unhandled."""


class Middleware:
    """Base class of middleware: every hook does nothing; override the ones you need.

    ``bridge`` is the bridge actor; ``delivery`` a :class:`troupe.brokers.Delivery`
    (stream, entry id, attempts, the message with its id and key); ``headers``
    the message's headers (a dict the hook may change before the message goes on).
    """

    # -- handling, in every actor of the system ------------------------------------------

    def wrap_handler(self, actor: Actor, handler: Handler) -> Handler:
        """The handler to call instead of ``handler`` (``async def`` exactly when it is)."""
        return handler

    def before_process(self, actor: Actor, message: Any) -> None:
        """Before ``actor`` handles ``message``."""

    def after_process(
        self, actor: Actor, message: Any, result: Any, error: BaseException | None
    ) -> None:
        """After ``actor`` handled ``message``: its result, or the exception it raised."""

    # -- asks -----------------------------------------------------------------------------------

    def before_ask(self, target: ActorRef, message: Any, headers: dict[str, str]) -> None:
        """Before ``message`` is sent to ``target`` by ``ask``."""

    def after_ask(
        self,
        target: ActorRef,
        message: Any,
        headers: dict[str, str],
        result: Any,
        error: BaseException | None,
    ) -> None:
        """When the ask's outcome is known (a timeout and a cancellation included)."""

    # -- producer bridges -------------------------------------------------------------------

    def before_publish(
        self, bridge: Actor, stream: str, payload: Any, headers: dict[str, str]
    ) -> None:
        """Before a message is built for ``stream`` (an exception fails that publish)."""

    def after_publish(
        self,
        bridge: Actor,
        stream: str,
        message_id: str | None,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        """Once the broker stored the message (its id), or the publish failed for good."""

    # -- consumer bridges -------------------------------------------------------------------

    def before_deliver(
        self, bridge: Actor, delivery: Any, payload: Any, headers: dict[str, str]
    ) -> float | None:
        """Before the payload goes to the target: None, or seconds to hold it back."""
        return None

    def after_deliver(
        self,
        bridge: Actor,
        delivery: Any,
        payload: Any,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        """After the delivery ended: the handler returned (``error`` None) or raised,
        or the message never reached a handler (why: ``ActorStopped``, ...)."""

    def after_skip(self, bridge: Actor, delivery: Any, reason: SkipMessage) -> None:
        """After ``before_deliver`` skipped a message (it is acked, never handled)."""

    def after_retry(self, bridge: Actor, delivery: Any, error: BaseException, delay: float) -> None:
        """After a failed attempt was scheduled again in ``delay`` seconds."""

    def after_dead_letter(self, bridge: Actor, delivery: Any, reason: str) -> None:
        """After a message was moved to the DLQ with ``reason``."""

    # -- saga steps ---------------------------------------------------------------------------

    def before_saga_step(self, saga: str, run_id: str, step: str, action: str) -> None:
        """Before a saga run asks for ``step``'s ``action`` ("action" or "compensation")."""

    def after_saga_step(
        self, saga: str, run_id: str, step: str, action: str, error: BaseException | None
    ) -> None:
        """After that ask ended (``error`` None when the step succeeded)."""


#: The hooks a chain collects; ``after_*`` ones run in reverse order.
HOOKS = (
    "before_process",
    "after_process",
    "before_ask",
    "after_ask",
    "before_publish",
    "after_publish",
    "before_deliver",
    "after_deliver",
    "after_skip",
    "after_retry",
    "after_dead_letter",
    "before_saga_step",
    "after_saga_step",
)


class HandlerHookMiddleware(Middleware):
    """A :data:`~troupe.hooks.HandlerHook` as middleware (``ActorSystem(handler_hook=...)``)."""

    def __init__(self, hook: HandlerHook) -> None:
        self.hook = hook

    def wrap_handler(self, actor: Actor, handler: Handler) -> Handler:
        return self.hook(actor, handler)


class MiddlewareChain:
    """An ordered chain of middleware; each hook attribute is a tuple of bound methods.

    An empty tuple (no middleware overrides that hook) is the zero-cost case:
    callers test it before building anything.
    """

    __slots__ = ("middleware", "wrappers", *HOOKS)

    before_process: tuple[Callable[..., Any], ...]
    after_process: tuple[Callable[..., Any], ...]
    before_ask: tuple[Callable[..., Any], ...]
    after_ask: tuple[Callable[..., Any], ...]
    before_publish: tuple[Callable[..., Any], ...]
    after_publish: tuple[Callable[..., Any], ...]
    before_deliver: tuple[Callable[..., Any], ...]
    after_deliver: tuple[Callable[..., Any], ...]
    after_skip: tuple[Callable[..., Any], ...]
    after_retry: tuple[Callable[..., Any], ...]
    after_dead_letter: tuple[Callable[..., Any], ...]
    before_saga_step: tuple[Callable[..., Any], ...]
    after_saga_step: tuple[Callable[..., Any], ...]

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        chain = tuple(middleware)
        for item in chain:
            if not isinstance(item, Middleware):
                from .errors import ConfigError

                raise ConfigError(
                    "middleware", f"must be troupe.Middleware instances, got {item!r}"
                )
        self.middleware = chain
        self.wrappers = tuple(m for m in chain if _overrides(m, "wrap_handler"))
        for hook in HOOKS:
            bound = [getattr(m, hook) for m in chain if _overrides(m, hook)]
            if hook.startswith("after_"):
                bound.reverse()
            setattr(self, hook, tuple(bound))

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def __len__(self) -> int:
        return len(self.middleware)

    def extended(self, more: Sequence[Middleware]) -> MiddlewareChain:
        """This chain followed by ``more`` (a bridge's own middleware after the system's)."""
        if not more:
            return self
        return MiddlewareChain((*self.middleware, *more))

    def wrap(self, actor: Actor, handler: Handler) -> Handler:
        """The handler an actor's cell calls: ``handler`` inside every wrapper and hook."""
        for middleware in reversed(self.wrappers):  # the first middleware ends outermost
            handler = middleware.wrap_handler(actor, handler)
        if self.before_process or self.after_process:
            handler = _around(actor, handler, self.before_process, self.after_process)
        return handler

    # -- calling hooks (the callers test the tuple first) ---------------------------------

    def ask_started(
        self, target: ActorRef, message: Any, headers: dict[str, str] | None, reply: Any
    ) -> dict[str, str] | None:
        """Run ``before_ask`` hooks; arrange ``after_ask`` on ``reply``; the headers to send."""
        sent = dict(headers) if headers else {}
        for hook in self.before_ask:
            hook(target, message, sent)
        if self.after_ask:
            after = self.after_ask

            def done(future: Any) -> None:
                if future.cancelled():
                    from asyncio import CancelledError

                    result, error = None, CancelledError()
                else:
                    error = future.exception()
                    result = None if error is not None else future.result()
                for hook in after:
                    hook(target, message, sent, result, error)

            reply.add_done_callback(done)
        return sent or headers


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


def _around(
    actor: Actor,
    handler: Handler,
    before: tuple[Callable[..., Any], ...],
    after: tuple[Callable[..., Any], ...],
) -> Handler:
    """``handler`` with ``before_process`` / ``after_process`` hooks around each call."""
    if is_async_callable(handler):
        call: Callable[[Any], Awaitable[Any]] = handler

        @functools.wraps(handler)
        async def handle_async(message: Any) -> Any:
            try:
                for hook in before:
                    hook(actor, message)
                result = await call(message)
            except SkipMessage:
                return None
            except Exception as exc:
                for hook in after:
                    hook(actor, message, None, exc)
                raise
            for hook in after:
                hook(actor, message, result, None)
            return result

        return handle_async

    @functools.wraps(handler)
    def handle(message: Any) -> Any:
        try:
            for hook in before:
                hook(actor, message)
            result = handler(message)
        except SkipMessage:
            return None
        except Exception as exc:
            for hook in after:
                hook(actor, message, None, exc)
            raise
        for hook in after:
            hook(actor, message, result, None)
        return result

    return handle


__all__ = ["HandlerHookMiddleware", "Middleware", "MiddlewareChain", "SkipMessage"]
