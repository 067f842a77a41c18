"""``SyncActorSystem``: an ActorSystem on a background thread, for sync programs."""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from .cell import ActorFactory
from .errors import SystemClosed
from .loop import new_event_loop
from .ref import SYSTEM_TIMEOUT, ActorRef
from .system import ActorSystem, ShutdownReport

T = TypeVar("T")

logger = logging.getLogger(__name__)


class SyncActorSystem:
    """Runs an :class:`ActorSystem` on its own thread and event loop.

    Every method is a plain blocking call, safe from any thread:

    >>> from troupe import Actor, SyncActorSystem
    >>> class Doubler(Actor):
    ...     def receive(self, n):
    ...         return 2 * n
    >>> with SyncActorSystem("app") as system:
    ...     doubler = system.spawn(Doubler)
    ...     system.ask(doubler, 21)
    42

    Without ``with`` or ``shutdown()`` (a module-level system in a Flask app),
    it drains and stops its actors at interpreter exit, within ``shutdown_timeout``.
    """

    def __init__(self, name: str = "troupe", **settings: Any) -> None:
        self.system = ActorSystem(name, **settings)
        self._loop = new_event_loop()
        self._started = threading.Event()
        self._finished: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"troupe-{name}", daemon=True)
        self._thread.start()
        self._started.wait()
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """Drain at interpreter exit, as ``with`` does (the loop thread is a daemon)."""
        try:
            self.shutdown()
        except Exception:
            logger.exception("actor system %s failed to shut down at exit", self.system.name)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _main(self) -> None:
        self.system.start()
        self._finished = self._loop.create_future()
        self._started.set()
        await self._finished

    def _call(self, fn: Callable[[], T]) -> T:
        return self._await(_as_coroutine(fn))

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise SystemClosed(f"actor system {self.system.name!r} has been shut down")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking SyncActorSystem calls cannot run on its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The background event loop."""
        return self._loop

    def spawn(
        self, factory: ActorFactory, *args: Any, name: str | None = None, **kw: Any
    ) -> ActorRef:
        """Create and start an actor; returns its ref."""
        return self._call(lambda: self.system.spawn(factory, *args, name=name, **kw))

    def lookup(self, name: str) -> ActorRef:
        """The ref of the live actor called ``name``; raises ActorNotFound."""
        return self._call(lambda: self.system.lookup(name))

    def tell(self, ref: ActorRef, message: Any) -> None:
        """Send one-way; blocks while a ``backpressure`` mailbox is full."""
        ref.tell(message)

    def ask(self, ref: ActorRef, message: Any, *, timeout: float | None = SYSTEM_TIMEOUT) -> Any:
        """Send and wait for the reply (or the handler's exception, or AskTimeout)."""
        return self._await(_ask(ref, message, timeout))

    def stop(self, ref: ActorRef) -> None:
        """Stop one actor and wait until it has stopped."""
        self._await(self.system.stop(ref))

    def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Drain and stop every actor, then end the background thread."""
        atexit.unregister(self._at_exit)
        if not self._thread.is_alive():
            return ShutdownReport(True, 0, 0, 0.0)
        report = self._await(self.system.shutdown(timeout))
        finished = self._finished
        assert finished is not None
        self._loop.call_soon_threadsafe(finished.set_result, None)
        self._thread.join()
        return report

    def __enter__(self) -> SyncActorSystem:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


async def _as_coroutine(fn: Callable[[], T]) -> T:
    return fn()


async def _ask(ref: ActorRef, message: Any, timeout: float | None) -> Any:
    return await ref.ask(message, timeout=timeout)  # on the system's loop
