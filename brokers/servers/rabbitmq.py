"""A real RabbitMQ node for tests: ``RabbitServer`` runs its own rabbitmq-server.

Never the system service: the node gets its own name, AMQP, distribution,
management and epmd ports on 127.0.0.1, and its cookie (``HOME``), data
(``RABBITMQ_MNESIA_BASE``), logs and config under a temporary folder. The
management plugin is on so tests can make a vhost per test in milliseconds
(``new_vhost``), where ``rabbitmqctl`` takes half a second per call. Erlang
starts slowly (4-7 s here), so one node serves a whole test session; ``stop``
/ ``start`` / ``restart`` / ``kill`` serve fault tests (data survives them).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

from .process import ServerMissing, ServerProcess, make_certificates

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "rabbitmq-server is not installed; install the Debian package with "
    "'apt-get install rabbitmq-server' (scripts/test does this when it is missing)"
)
SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin")


def find_rabbitmq_server() -> str:
    """The rabbitmq-server start script (not the /usr/sbin wrapper that switches user)."""
    for directory in SCRIPT_DIRS:
        candidate = os.path.join(directory, "rabbitmq-server")
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("rabbitmq-server")
    if found:
        return found
    raise ServerMissing(INSTALL_HINT)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _epmd() -> str | None:
    found = shutil.which("epmd")
    if found:
        return found
    for path in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")):
        return str(path)
    return None


class RabbitServer(ServerProcess):
    """A rabbitmq-server node on 127.0.0.1 (``url``: the default vhost, guest/guest)."""

    def __init__(self, directory: str | None = None, *, tls: bool = False) -> None:
        self.binary = find_rabbitmq_server()
        ports = free_ports(5)  # distinct: two free_port() calls may return the same port
        self.port, self.dist_port, self.management_port, self.epmd_port, tls_port = ports
        self.tls_port = tls_port if tls else None  # amqps:// too, with a throwaway CA
        self.node = f"troupe-{uuid.uuid4().hex[:8]}@localhost"
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="troupe-rabbitmq-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0  # how long the last start took
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def vhost_url(self, vhost: str, *, tls: bool = False) -> str:
        """The URL of ``vhost`` on this node (``amqps://`` on the TLS port with ``tls``)."""
        if tls:
            return f"amqps://guest:guest@127.0.0.1:{self.tls_port}/{quote(vhost, safe='')}"
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{quote(vhost, safe='')}"

    @property
    def ca_file(self) -> str:
        """The CA certificate that signed the node's (TLS nodes only)."""
        return str(self.directory / "ca.crt")

    def _write_config(self) -> None:
        d = self.directory
        for sub in ("home", "mnesia", "log", "plugins"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "collect_statistics_interval = 500\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (d / "enabled_plugins").write_text("[rabbitmq_management].\n")
        if self.tls_port is not None:
            make_certificates(d)
            with (d / "rabbitmq.conf").open("a") as conf:
                conf.write(
                    f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                    f"ssl_options.cacertfile = {d / 'ca.crt'}\n"
                    f"ssl_options.certfile = {d / 'server.crt'}\n"
                    f"ssl_options.keyfile = {d / 'server.key'}\n"
                    "ssl_options.verify = verify_none\n"
                    "ssl_options.fail_if_no_peer_cert = false\n"
                )

    def _env(self) -> dict[str, str]:
        d = self.directory
        env = dict(os.environ)
        env.update(
            HOME=str(d / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "plugins"),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            ERL_EPMD_PORT=str(self.epmd_port),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Start the node and wait until AMQP and the management API answer."""
        if self.process is not None and self.process.poll() is None:
            return
        began = time.monotonic()
        self.process = subprocess.Popen(
            [self.binary],
            env=self._env(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        (self.directory / "node.pgid").write_text(str(self.process.pid))
        self._watch()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"rabbitmq-server exited at start: {self._log_tail()}")
            if self._amqp_answers() and self._api("GET", "/api/overview", quiet=True):
                self.startup_seconds = time.monotonic() - began
                logger.info("rabbitmq node %s up in %.1f s", self.node, self.startup_seconds)
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"rabbitmq-server did not answer in {timeout} s: {self._log_tail()}")

    def _amqp_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return bool(sock.recv(8))
        except OSError:
            return False

    def _api(self, method: str, path: str, body: object = None, *, quiet: bool = False) -> bool:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}{path}", data=data, method=method
        )
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status: int = reply.status
                return 200 <= status < 300
        except (urllib.error.URLError, OSError):
            if quiet:
                return False
            raise

    def new_vhost(self, name: str | None = None) -> str:
        """Make an empty vhost (guest may use it); returns its name."""
        vhost = name or f"t-{uuid.uuid4().hex[:12]}"
        quoted = quote(vhost, safe="")
        self._api("PUT", f"/api/vhosts/{quoted}", {})
        self._api(
            "PUT",
            f"/api/permissions/{quoted}/guest",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
        return vhost

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost and everything in it."""
        with contextlib.suppress(urllib.error.URLError, OSError):
            self._api("DELETE", f"/api/vhosts/{quote(name, safe='')}")

    def _log_tail(self) -> str:
        tails = []
        with contextlib.suppress(OSError):  # an Erlang VM that died says why here
            dump = (self.directory / "erl_crash.dump").read_text(errors="replace")[:4000]
            tails += [line for line in dump.splitlines() if line.startswith("Slogan:")]
        for path in sorted((self.directory / "log").glob("*.log")):
            with contextlib.suppress(OSError):
                tails.append(path.read_text(errors="replace")[-1500:])
        return "\n".join(tails)

    def _beam(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.directory / "rabbitmq.pid").read_text().strip())
        return None

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM to the Erlang VM: queues are flushed)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        beam = self._beam()
        with contextlib.suppress(ProcessLookupError):
            os.kill(beam, signal.SIGTERM) if beam else os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """Stop the node with SIGKILL (what was not yet on disk may be lost)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _watch(self) -> None:
        """A watchdog shell that outlives this process: if it dies without ``close`` (a
        killed test run), the node and its epmd go too, and the data folder with them."""
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        epmd = _epmd() or "true"
        d = self.directory
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
            f'kill -KILL -"$(cat {d}/node.pgid)" 2>/dev/null; '
            f"sleep 1; ERL_EPMD_PORT={self.epmd_port} {epmd} -kill >/dev/null 2>&1; "
            + (f"rm -rf {d}" if self._own_dir else "true")
        )
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def close(self) -> None:
        """Stop the node and its epmd, and remove the data folder."""
        self.stop()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait()
        epmd = _epmd()
        if epmd is not None:
            env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)}
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [epmd, "-kill"], env=env, capture_output=True, timeout=10, check=False
                )
        self.remove_directory()
