"""``SyncActorSystem``: an ActorSystem on a background thread, for sync programs."""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Callable, Coroutine
from threading import get_ident
from types import TracebackType
from typing import Any, TypeVar

from . import sigterm
from .cell import ActorFactory
from .clock import RealClock
from .errors import SystemClosed, check_timeout
from .loop import new_event_loop
from .ref import SYSTEM_TIMEOUT, ActorRef
from .system import ActorSystem, ShutdownReport
from .thread_intake import ThreadWaiter, ask_on_loop, trace_headers
from .tracing import PROPAGATION

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
    Made on the main thread, it drains on SIGTERM too (docker, systemd, Kubernetes),
    as on Ctrl-C, unless the application handles SIGTERM itself (:mod:`troupe.sigterm`).
    """

    def __init__(self, name: str = "troupe", **settings: Any) -> None:
        self.system = ActorSystem(name, **settings)
        self._loop = new_event_loop()
        self._started = threading.Event()
        self._finished: asyncio.Future[None] | None = None
        self._real_time = False
        self._thread = threading.Thread(target=self._run, name=f"troupe-{name}", daemon=True)
        self._thread.start()
        self._started.wait()
        atexit.register(self._at_exit)
        sigterm.hold(self)

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
        self._real_time = type(self.system.clock) is RealClock  # asks time out in their thread
        self._finished = self._loop.create_future()
        self._started.set()
        await self._finished

    def _call(self, fn: Callable[[], T]) -> T:
        return self._await(_as_coroutine(fn))

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            self._check_caller()
        except BaseException:
            coro.close()
            raise
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
        """Send and wait for the reply (or the handler's exception, or AskTimeout).

        ``timeout`` is ``ref.ask``'s (default: ``ref.default_ask_timeout``). The ask
        goes through the system's thread intake (:mod:`troupe.thread_intake`): no
        coroutine per call, and asks from many threads reach the loop in batches.
        """
        if timeout is SYSTEM_TIMEOUT:
            timeout = ref.default_ask_timeout
        elif timeout is not None:
            timeout = check_timeout("timeout", timeout)
        self._check_caller()
        waiter = ThreadWaiter()
        system = self.system
        on_thread = timeout is not None and self._real_time
        headers = trace_headers(ref) if PROPAGATION.on else None
        try:
            system.thread_intake.submit(
                ask_on_loop, ref, message, None if on_thread else timeout, headers, waiter
            )
        except RuntimeError:  # the loop closed meanwhile
            raise self._closed() from None
        if on_thread:
            return waiter.wait(self._loop, self._raise_closed, timeout, ref.name)
        return waiter.wait(self._loop, self._raise_closed)

    def _check_caller(self) -> None:
        if self._loop.is_closed():  # the loop thread closes it as it ends
            raise self._closed()
        if get_ident() == self._thread.ident:
            raise RuntimeError("blocking SyncActorSystem calls cannot run on its own loop thread")

    def _closed(self) -> SystemClosed:
        return SystemClosed(f"actor system {self.system.name!r} has been shut down")

    def _raise_closed(self) -> None:
        raise self._closed()

    def stop(self, ref: ActorRef) -> None:
        """Stop one actor and wait until it has stopped."""
        self._await(self.system.stop(ref))

    def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Drain and stop every actor, then end the background thread."""
        atexit.unregister(self._at_exit)
        sigterm.release(self)
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
