"""A real Apache Kafka for tests: ``KafkaServer`` runs one KRaft node (broker + controller).

The jars come from Maven Central (``scripts/kafka/pom.xml``: ``kafka_2.13`` and a
log4j SLF4J binding); ``scripts/test`` copies them into ``~/.cache/troupe/kafka-libs``
(``TROUPE_KAFKA_LIBS`` points elsewhere). The server formats a storage folder under
a temporary directory, listens on two free 127.0.0.1 ports (clients, controller) and
keeps its log on ``stop``/``start``/``restart`` (topics, messages and committed
offsets survive); ``kill`` is SIGKILL. Internal topics have replication factor 1,
``group.initial.rebalance.delay.ms`` is 0 and the minimum session timeout is 500 ms so
that tests are fast. The pytest fixtures built on it live in
:mod:`troupe.brokers.servers.pytest_plugin`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from .process import ServerMissing, ServerProcess, free_port

logger = logging.getLogger(__name__)

LIBS_ENV = "TROUPE_KAFKA_LIBS"
DEFAULT_LIBS = Path.home() / ".cache" / "troupe" / "kafka-libs"
FETCH_HINT = (
    "fetch them with 'scripts/test' (it runs 'mvn -q -f scripts/kafka/pom.xml "
    "dependency:copy-dependencies -DoutputDirectory=~/.cache/troupe/kafka-libs'; "
    "Maven and Java 17 come from 'apt-get install maven openjdk-17-jre-headless')"
)


def find_java() -> str:
    """The java binary; raises ServerMissing with install instructions."""
    home = os.environ.get("JAVA_HOME")
    for candidate in (
        shutil.which("java"),
        str(Path(home) / "bin" / "java") if home else None,
        "/usr/bin/java",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerMissing(
        "java is not installed; install the Debian package with "
        "'apt-get install openjdk-17-jre-headless' (scripts/test does this when it is missing)"
    )


def kafka_libs() -> Path:
    """The folder of Kafka server jars; raises ServerMissing saying how to fetch them."""
    libs = Path(os.environ.get(LIBS_ENV) or DEFAULT_LIBS)
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise ServerMissing(f"the Kafka server jars are not in {libs}; {FETCH_HINT}")
    return libs


def cluster_id() -> str:
    """A random KRaft cluster id (what ``StorageTool random-uuid`` prints)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class KafkaServer(ServerProcess):
    """One Kafka KRaft node as a child process on 127.0.0.1 (``bootstrap``)."""

    def __init__(self, directory: str | None = None, *, heap: str = "512m") -> None:
        self.java = find_java()
        self.libs = kafka_libs()
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.heap = heap
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="troupe-kafka-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """A ``kafka://`` URL for :func:`troupe.brokers.connect`."""
        return f"kafka://{self.bootstrap}"

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _write_config(self) -> Path:
        d = self.directory
        config = d / "server.properties"
        (d / "log4j2.properties").write_text(
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.file.ref = file\n"
            "appender.file.type = File\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {d / 'server.log'}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        )
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={d / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "group.min.session.timeout.ms=500",
                    "auto.create.topics.enable=true",
                    "log.flush.interval.messages=1",
                    "",
                ]
            )
        )
        return config

    def _format(self) -> None:
        config = self._write_config()
        done = subprocess.run(
            [
                self.java,
                "-cp",
                self._classpath(),
                f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id()}",  # an id may start with "-"
                "-c",
                str(config),
            ],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"kafka storage format failed: {done.stdout.decode()}{done.stderr.decode()}"
            )
        self._formatted = True

    def start(self, timeout: float = 60.0) -> None:
        """Start the node (formatting its storage the first time); waits until it serves."""
        if self.process is not None and self.process.poll() is None:
            return
        if not self._formatted:
            self._format()
        d = self.directory
        self.process = subprocess.Popen(
            [
                self.java,
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}",
                "-cp",
                self._classpath(),
                "kafka.Kafka",
                str(d / "server.properties"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=open(d / "stdout.log", "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kafka exited at start: {self._log_tail()}")
            if self._serving():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"kafka did not serve on port {self.port} in {timeout} s")

    def _serving(self) -> bool:
        """True once the node answers an ApiVersions request on the client port."""
        request = (
            b"\x00\x12\x00\x00"  # api key 18 (ApiVersions), version 0
            b"\x00\x00\x00\x01"  # correlation id
            b"\x00\x06troupe"  # client id
        )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(len(request).to_bytes(4, "big") + request)
                answer = sock.recv(16)
                return len(answer) >= 10 and answer[8:10] == b"\x00\x00"
        except OSError:
            return False

    def _log_tail(self) -> str:
        out = ""
        for name in ("stdout.log", "server.log"):
            with contextlib.suppress(OSError):
                out += (self.directory / name).read_text()[-2000:]
        return out

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM: the node closes its logs)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop the node with SIGKILL."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()



__all__ = ["KafkaServer", "ServerMissing", "cluster_id", "find_java", "kafka_libs"]
