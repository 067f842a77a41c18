"""The observer's line to a process-tree child: one Unix socket per child process.

A child serves :func:`serve_socket` in the tree's metrics directory
(``<pid>.observe.sock``) on its own event loop: an idle listening socket, no
thread and no timer, so it costs nothing while nobody looks. The root's
observer connects once per question and sends one JSON line::

    {"op": "ping"}                      -> "pong" (the loop answered)
    {"op": "snapshot"}                  -> troupe.observe.snapshot(system)
    {"op": "ready"}                     -> troupe.observe.readiness(system)
    {"op": "act", "action": ..., "params": {...}}

and reads one JSON line back: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. The socket file is mode 0600 (the tree's
owner only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import observe

if TYPE_CHECKING:
    from .system import ActorSystem

logger = logging.getLogger(__name__)

SUFFIX = ".observe.sock"
MAX_REQUEST = 1 << 20


def socket_path(directory: str | os.PathLike[str], pid: int | None = None) -> Path:
    """Where the child with ``pid`` (this process by default) listens."""
    return Path(directory) / f"{os.getpid() if pid is None else pid}{SUFFIX}"


def pid_of(path: Path) -> int | None:
    """The pid in a socket's file name, None for other files."""
    name = path.name
    if not name.endswith(SUFFIX):
        return None
    try:
        return int(name[: -len(SUFFIX)])
    except ValueError:
        return None


async def serve_socket(system: ActorSystem, path: str | os.PathLike[str]) -> asyncio.Server:
    """Answer observer questions about ``system`` on the Unix socket ``path``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            reply = await _answer(system, line)
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    target = str(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)  # a dead process's socket with a reused pid
    server = await asyncio.start_unix_server(handle, target, limit=MAX_REQUEST)
    os.chmod(target, 0o600)
    return server


async def _answer(system: ActorSystem, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        op = request["op"]
    except (ValueError, KeyError, TypeError):
        return {"ok": False, "error": "a request is one JSON object with an 'op'"}
    try:
        if op == "ping":
            result: Any = "pong"
        elif op == "snapshot":
            result = await observe.snapshot(system)
        elif op == "ready":
            result = await observe.readiness(system)
        elif op == "act":
            result = await observe.act(
                system, str(request.get("action")), request.get("params") or {}
            )
        else:
            return {"ok": False, "error": f"unknown op {op!r}"}
    except observe.ActionError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        logger.exception("observer request %s failed", op)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "result": result}


class ChildGone(Exception):
    """The child's socket is not there or refuses connections (the child ended)."""


def ask_socket(path: str | os.PathLike[str], request: dict[str, Any], timeout: float) -> Any:
    """Send one request to a child (blocking, from any thread); its result.

    Raises ``TimeoutError`` when the child's loop does not answer within
    ``timeout`` seconds, :class:`ChildGone` when nothing listens, and
    :class:`~troupe.observe.ActionError` with the child's message when it refused.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ChildGone(str(path)) from exc
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            chunks: list[bytes] = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError as exc:
            raise TimeoutError(f"no answer within {timeout} s") from exc
    raw = b"".join(chunks)
    if not raw:
        raise ChildGone(str(path))
    reply = json.loads(raw)
    if not reply.get("ok"):
        raise observe.ActionError(str(reply.get("error")))
    return reply.get("result")


__all__ = ["SUFFIX", "ChildGone", "ask_socket", "pid_of", "serve_socket", "socket_path"]
