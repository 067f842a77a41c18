"""Real broker servers for tests: what every server shares (``ServerProcess``, ports, certificates).

The server listens on a free 127.0.0.1 port with its data in a temporary
folder (append-only file on, so a restart keeps the streams). ``stop`` /
``start`` / ``restart`` / ``kill`` serve fault tests. The pytest fixtures
built on it live in :mod:`troupe.brokers.servers.pytest_plugin`.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)



class ServerMissing(RuntimeError):
    """The server binary is not installed; the message says how to install it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_certificates(directory: Path) -> None:
    """A throwaway CA (``ca.crt``) and a server certificate for 127.0.0.1/localhost
    (``server.crt``, ``server.key``) in ``directory``, made with the ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServerMissing("openssl is not installed; 'apt-get install openssl' provides it")
    d = directory

    def run(*args: str) -> None:
        subprocess.run(
            [openssl, *args], check=True, capture_output=True, cwd=d, stdin=subprocess.DEVNULL
        )

    key = ("-newkey", "rsa:2048", "-nodes")
    ca_name = ("-subj", "/CN=troupe-test-ca")
    run("req", "-x509", *key, *ca_name, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    signed = ("-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        *signed,
        "-out",
        "server.crt",
        "-extfile",
        "san.ext",
    )


class ServerProcess:
    """A server process the tests run: subclasses start and stop it; restart, close and
    ``with`` are shared. ``directory`` holds its data (removed by ``close`` when the
    server made it)."""

    directory: Path
    _own_dir: bool

    def start(self) -> None:
        """Start the server (and wait until it serves)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server gracefully."""
        raise NotImplementedError

    def restart(self, down_for: float = 0.0) -> None:
        """Stop gracefully, stay down ``down_for`` seconds, start again on the same ports."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its data folder."""
        self.stop()
        self.remove_directory()

    def remove_directory(self) -> None:
        """Remove the data folder when the server made it."""
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
