"""``RedisServer``: a redis-server child process for tests, on a free loopback port.

The server listens on a free 127.0.0.1 port with its data in a temporary
folder (append-only file on, so a restart keeps the streams). ``stop`` /
``start`` / ``restart`` / ``kill`` serve fault tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from .process import ServerMissing, ServerProcess, free_port, make_certificates

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "redis-server is not installed; install the Debian package with "
    "'apt-get install redis-server' (scripts/test does this when it is missing)"
)



def find_redis_server() -> str:
    """The redis-server binary; raises ServerMissing with install instructions."""
    found = shutil.which("redis-server")
    for candidate in (found, "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerMissing(INSTALL_HINT)


class RedisServer(ServerProcess):
    """A redis-server child process on 127.0.0.1 (``url``) with a temporary data dir.

    ``tls=True`` serves TLS only (``rediss://``) with a throwaway CA made by the
    ``openssl`` command (its certificate is ``ca_file``); ``password`` sets
    ``requirepass`` (and goes into ``url``).
    """

    def __init__(
        self,
        port: int | None = None,
        directory: str | None = None,
        *,
        tls: bool = False,
        password: str | None = None,
    ) -> None:
        self.binary = find_redis_server()
        self.port = port or free_port()
        self.tls = tls
        self.password = password
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="troupe-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        if tls:
            self._make_certificates()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def ca_file(self) -> str:
        """The CA certificate that signed the server's (TLS servers only)."""
        return str(self.directory / "ca.crt")

    def _make_certificates(self) -> None:
        make_certificates(self.directory)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            return
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.tls:
            d = self.directory
            args[args.index("--port") + 1] = "0"
            args += [
                "--tls-port", str(self.port),
                "--tls-cert-file", str(d / "server.crt"),
                "--tls-key-file", str(d / "server.key"),
                "--tls-ca-cert-file", str(d / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self._log_tail()
                raise RuntimeError(f"redis-server exited at start: {err}{log}")
            if self._ping():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                sock: socket.socket = raw
                if self.tls:
                    context = ssl.create_default_context(cafile=self.ca_file)
                    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(b"PING\r\n")
                answer = sock.recv(64)
                return answer.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text()[-2000:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM: the server flushes its append-only file)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    def kill(self) -> None:
        """Stop the server with SIGKILL (unflushed writes may be lost)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if process is not None and process.stderr:
            process.stderr.close()

