"""Web frameworks: an actor system inside an ASGI app's lifespan (FastAPI, Starlette).

``lifespan(build)`` is what ``FastAPI(lifespan=...)`` and ``Starlette(lifespan=...)``
take: on startup it starts an :class:`~troupe.ActorSystem` on the server's event
loop and calls ``build(system)`` (``def`` or ``async def``) to spawn the app's
actors and bridges; on shutdown it drains the system (every mailbox handled,
bridges ack what was handled, producers confirm or report) within its
``shutdown_timeout``. The system is ``app.state.troupe`` and, through the lifespan
state, ``request.state.troupe``.

uvicorn (and hypercorn, granian) turn SIGTERM into a graceful shutdown: they stop
accepting connections, let the requests in progress finish, then run the lifespan's
shutdown, so a message a request handed to an actor before its response went out is
handled before the process exits.

>>> from troupe.web import lifespan
>>> # app = FastAPI(lifespan=lifespan(build, shutdown_timeout=20))

WSGI apps (Flask) are sync: use a module-level :class:`~troupe.SyncActorSystem`
made when the worker imports the app (not before a fork: gunicorn without
``--preload``); it drains at interpreter exit, and SIGTERM drains it too
(:mod:`troupe.sigterm`, or the server's own graceful stop). See the README.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from .system import ActorSystem

Build = Callable[[ActorSystem], Awaitable[None] | None]


def lifespan(
    build: Build | None = None, name: str = "troupe", **settings: Any
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """An ASGI lifespan that runs an ActorSystem (``settings`` are ActorSystem's)."""

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with ActorSystem(name, **settings) as system:
            state = getattr(app, "state", None)
            if state is not None:
                state.troupe = system
            if build is not None:
                made = build(system)
                if inspect.isawaitable(made):
                    await made
            yield {"troupe": system}

    return run


__all__ = ["lifespan"]
