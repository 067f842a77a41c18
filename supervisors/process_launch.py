"""Start one child process in a fresh interpreter and hold on to it.

No ``fork`` of the parent: the child is a new ``python`` running
:mod:`troupe.supervisors.process_child`, so threads and a running event loop in
the parent are never copied. Its stdin is one end of a socket pair: the child
reports readiness on it, and sees end-of-file the moment the parent dies.
The child gets its own session, so a terminal's Ctrl-C reaches only the
root, which stops the children in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from .process_child import BOOTSTRAP, READY, ChildConfig

logger = logging.getLogger(__name__)


class ChildProcess:
    """A running child: its pid, its exit status, its readiness and its signals."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        control: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.process = process
        self.pid: int = process.pid
        self._reader, self._writer = control

    @classmethod
    async def start(cls, config: ChildConfig, env: dict[str, str]) -> ChildProcess:
        """Launch ``python -c BOOTSTRAP CONFIG`` with the control socket as stdin."""
        parent_end, child_end = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                BOOTSTRAP,
                config.to_json(),
                stdin=child_end.fileno(),
                env=env,
                start_new_session=True,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        control = await asyncio.open_unix_connection(sock=parent_end)
        return cls(process, control)

    async def watch_ready(self, on_ready: Callable[[], None]) -> None:
        """Call ``on_ready`` when the child reports that its tree is up."""
        try:
            line = await self._reader.readline()
        except (OSError, asyncio.IncompleteReadError):
            return
        if line == READY:
            on_ready()

    async def wait(self) -> int:
        """Wait for the exit; the status (negative: killed by that signal)."""
        code = await self.process.wait()
        self.close()
        return code

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` unless the process has already exited."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def close(self) -> None:
        """Close the parent's end of the control socket (the child then drains and exits)."""
        if not self._writer.is_closing():
            self._writer.close()
