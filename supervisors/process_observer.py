"""The observer of a process tree: every child's system, seen from the root.

:class:`TreeObserverHooks` is the :class:`~troupe.observer.Source` of a
``troupe run`` tree. Children answer on a Unix socket each in the tree's metrics
directory (:mod:`troupe.observe_ipc`, started by the child when that directory
is set); the root's own loop answers ``/healthz`` for the supervisor. A child
that is not running shows its supervisor's view (state, restarts) and counts
against readiness.

>>> from troupe.metrics import MetricsEndpoint
>>> endpoint = MetricsEndpoint(port=0)
>>> hooks = TreeObserverHooks(endpoint)
>>> endpoint.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from troupe.metrics.export import MetricsEndpoint
from troupe.observe import ActionError
from troupe.observe_ipc import ChildGone, ask_socket, socket_path
from troupe.observer import (
    TOKEN_ENV,
    Observer,
    ProcessView,
    discovery_directory,
    token_from_env,
)

from .process_hooks import ProcessHooks
from .process_supervisor import ChildState, ChildStatus, ProcessSupervisor

logger = logging.getLogger(__name__)

T = TypeVar("T")
_ANSWERING = (ChildState.RUNNING, ChildState.STARTING, ChildState.STOPPING)


class TreeObserverHooks(ProcessHooks):
    """Serve a process tree's observer beside its ``/metrics`` (``endpoint``).

    ``allow_actions`` turns actions on; the token is ``token``, else
    ``TROUPE_OBSERVER_TOKEN``, else a new random one. The URL (and the token when
    actions are on) goes in a file only this user can read, for ``troupe top --pid``.
    """

    def __init__(
        self,
        endpoint: MetricsEndpoint,
        *,
        allow_actions: bool = False,
        token: str | None = None,
        health_bound: float = 1.0,
    ) -> None:
        self.endpoint = endpoint
        self.directory = endpoint.directory
        self.tree: ProcessSupervisor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        if allow_actions and not token:
            token = token_from_env() or secrets.token_urlsafe(24)
        self.observer = Observer(
            self, allow_actions=allow_actions, token=token, health_bound=health_bound
        )
        self.observer.mount(endpoint.server)
        self._token = token
        self._pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="troupe-observe")
        self.discovery: Path | None = None

    @property
    def url(self) -> str:
        """The observer page's URL."""
        return self.endpoint.url.rsplit("/", 1)[0] + "/observer"

    # -- hooks ----------------------------------------------------------------------------

    def tree_starting(self, tree: ProcessSupervisor) -> None:
        self.tree = tree
        self.loop = asyncio.get_running_loop()
        self._write_discovery()
        logger.info("observer at %s", self.url)
        if self.observer.allow_actions:
            where = f"${TOKEN_ENV}" if token_from_env() == self._token else self.discovery
            logger.warning("observer actions are ON; the token is in %s", where)

    def tree_stopped(self, tree: ProcessSupervisor) -> None:
        if self.discovery is not None:
            with contextlib.suppress(OSError):
                self.discovery.unlink()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _write_discovery(self) -> None:
        folder = discovery_directory()
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            path = folder / f"{os.getpid()}.json"
            data = {"url": self.url, "pid": os.getpid()}
            if self.observer.allow_actions:
                data["token"] = self._token or ""
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            self.discovery = path
        except OSError as exc:
            logger.warning("cannot write the observer's discovery file in %s: %s", folder, exc)

    # -- Source ---------------------------------------------------------------------------

    def _statuses(self, timeout: float) -> list[ChildStatus]:
        tree, loop = self.tree, self.loop
        if tree is None or loop is None:
            return []
        return _on_loop(loop, tree.status, timeout)

    def _each(self, children: list[ChildStatus], work: Callable[[ChildStatus], T]) -> list[T]:
        return list(self._pool.map(work, children))

    def _ask(self, child: ChildStatus, request: dict[str, Any], timeout: float) -> Any:
        if child.pid is None:
            raise ChildGone(child.name)
        return ask_socket(socket_path(self.directory, child.pid), request, timeout)

    def collect(self, timeout: float) -> list[ProcessView]:
        def one(child: ChildStatus) -> ProcessView:
            view = ProcessView(child.name, child.pid, child.state.value, child.restarts)
            if child.state not in _ANSWERING:
                return view
            try:
                view.snapshot = self._ask(child, {"op": "snapshot"}, timeout)
            except ChildGone:
                view.error = "not answering (starting, or no metrics directory)"
            except TimeoutError:
                view.error = f"event loop did not answer within {timeout} s"
            except (ActionError, OSError, ValueError) as exc:
                view.error = str(exc)
            return view

        return self._each(self._statuses(timeout), one)

    def ping(self, timeout: float) -> list[str]:
        loop = self.loop
        problems = []
        if loop is not None:
            try:
                _on_loop(loop, lambda: None, timeout)
            except TimeoutError:
                problems.append(f"root: event loop blocked for more than {timeout} s")
                return problems

        def one(child: ChildStatus) -> str | None:
            if child.state is not ChildState.RUNNING:
                return None  # liveness is about loops; a restarting child is readiness
            try:
                self._ask(child, {"op": "ping"}, timeout)
            except TimeoutError:
                return (
                    f"{child.name} (pid {child.pid}): event loop blocked for more than {timeout} s"
                )
            except (ChildGone, ActionError, OSError, ValueError):
                return None  # gone meanwhile: its supervisor restarts it
            return None

        problems.extend(p for p in self._each(self._statuses(timeout), one) if p)
        return problems

    def ready(self, timeout: float) -> list[str]:
        def one(child: ChildStatus) -> list[str]:
            if child.state is not ChildState.RUNNING:
                return [f"{child.name}: {child.state.value} (restarts {child.restarts})"]
            try:
                return [f"{child.name}: {p}" for p in self._ask(child, {"op": "ready"}, timeout)]
            except TimeoutError:
                return [f"{child.name}: event loop did not answer within {timeout} s"]
            except (ChildGone, ActionError, OSError, ValueError) as exc:
                return [f"{child.name}: not answering ({exc})"]

        statuses = self._statuses(timeout)
        if not statuses:
            return ["the process tree is not running"]
        return [p for found in self._each(statuses, one) for p in found]

    def act(self, process: str, action: str, params: Mapping[str, Any], timeout: float) -> Any:
        for child in self._statuses(timeout):
            if child.name == process:
                try:
                    return self._ask(
                        child, {"op": "act", "action": action, "params": dict(params)}, timeout
                    )
                except ChildGone:
                    raise ActionError(f"process {process} is not running") from None
        raise ActionError(f"no process named {process!r}")


def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` run on ``loop``; TimeoutError when the loop does not get to it in time."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def call() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    try:
        loop.call_soon_threadsafe(call)
    except RuntimeError as exc:  # the loop has closed
        raise TimeoutError("the loop has stopped") from exc
    return done.result(timeout)


def observer_hooks(
    endpoint: MetricsEndpoint, *, allow_actions: bool = False, token: str | None = None
) -> TreeObserverHooks:
    """What ``troupe run`` adds beside ``/metrics`` (the observer, health and readiness)."""
    return TreeObserverHooks(endpoint, allow_actions=allow_actions, token=token)


__all__ = ["TreeObserverHooks", "observer_hooks"]
