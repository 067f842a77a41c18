"""Actors whose code blocks: handlers run on a pykka ``ThreadingActor`` thread.

``ThreadActor`` keeps the troupe model (refs, mailbox, supervision) and moves
only the execution of ``receive`` and the lifecycle hooks onto a thread of its
own, so blocking calls do not stall the event loop. ``adopt`` puts an existing
pykka actor behind a troupe ref.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import weakref
from collections.abc import Callable
from typing import Any

import pykka

from .actor import Actor
from .errors import ConfigError


class _Call:
    __slots__ = ("args", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.args = args
        self.future = future
        self.loop = loop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _ThreadHost(pykka.ThreadingActor):
    """The pykka actor that runs a ThreadActor's code on its thread."""

    def on_receive(self, message: Any) -> None:
        if not isinstance(message, _Call):
            return
        try:
            result = message.fn(*message.args)
        except BaseException as exc:  # report everything; the thread carries on
            message.loop.call_soon_threadsafe(_settle, message.future, None, exc)
            return
        message.loop.call_soon_threadsafe(_settle, message.future, result, None)


class ThreadActor(Actor):
    """An actor whose ``receive`` and hooks run on a dedicated thread.

    Use it for blocking code (sync drivers, C calls holding the GIL). It has
    the same ref, mailbox, supervision and metrics as any actor. ``receive``
    and the lifecycle hooks must be plain ``def``: spawn refuses an ``async
    def`` one with a ConfigError naming it (an ``async def`` handler belongs
    on a plain :class:`Actor`).

    >>> import time
    >>> class Sleeper(ThreadActor):
    ...     def receive(self, seconds: float) -> str:
    ...         time.sleep(seconds)
    ...         return "rested"
    """

    _troupe_host: Any = None

    def _host(self) -> Any:
        if self._troupe_host is None:
            self._troupe_host = _ThreadHost.start()
        return self._troupe_host

    def _on_thread(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        hold = getattr(loop, "hold_time", None)
        if hold is not None:  # a simulated loop keeps virtual time still until it is done
            hold(future)
        context = contextvars.copy_context()  # the message's trace, for logs and tells
        self._host().tell(_Call(context.run, (fn, *args), future, loop))
        return future

    def _troupe_handler(self) -> Callable[[Any], Any]:
        _refuse_async(type(self))
        receive = self.receive

        async def receive_on_thread(message: Any) -> Any:
            return await self._on_thread(receive, message)

        return receive_on_thread

    def _troupe_call_hook(self, hook: str, *args: Any) -> Any:
        return self._on_thread(getattr(self, hook), *args)

    def _troupe_release(self) -> None:
        host, self._troupe_host = self._troupe_host, None
        if host is not None:
            host.stop(block=False)


_CHECKED: weakref.WeakSet[type] = weakref.WeakSet()
_SYNC_ONLY = ("receive", "on_start", "on_stop", "on_restart")


def _refuse_async(cls: type) -> None:
    """Raise ConfigError naming the first ``async def`` handler or hook of ``cls``."""
    if cls in _CHECKED:
        return
    for method in _SYNC_ONLY:
        if inspect.iscoroutinefunction(getattr(cls, method, None)):
            raise ConfigError(
                method,
                f"{cls.__name__}.{method} is async def, but a ThreadActor runs it on its own "
                "thread: make it a plain def, or subclass Actor for async handlers",
            )
    _CHECKED.add(cls)


class AdoptedPykkaActor(Actor):
    """A troupe actor that forwards each message to an existing pykka actor.

    Replies are what the pykka actor's ``on_receive`` returned; its failures
    fail this actor. Stopping the troupe actor stops the pykka actor.
    """

    def __init__(self, pykka_ref: Any) -> None:
        self._pykka_ref = pykka_ref

    async def receive(self, message: Any) -> Any:
        future = self._pykka_ref.ask(message, block=False)
        return await asyncio.get_running_loop().run_in_executor(None, future.get)

    async def on_stop(self) -> None:
        from .cell import State

        final_stop = self._cell().state is State.STOPPING  # not a restart
        if final_stop and self._pykka_ref.is_alive():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: self._pykka_ref.stop(block=True))
