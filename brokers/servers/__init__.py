"""Real broker servers for tests, yours and ours: each runs its own server process on a
free loopback port with a temporary data folder, and stops it (``with`` or ``close``).

- :class:`RedisServer` (redis-server; ``tls=True`` for ``rediss://``),
- :class:`RabbitServer` (a RabbitMQ node of its own, never the system service),
- :class:`KafkaServer` (a KRaft node from the Kafka jars; see ``scripts/test``),

with ``stop`` / ``start`` / ``restart`` / ``kill`` for fault tests. A missing
server binary raises :class:`ServerMissing`, whose message says how to install
it. Pytest fixtures built on them: ``troupe.brokers.servers.pytest_plugin``.
"""

from .kafka import KafkaServer
from .process import ServerMissing, ServerProcess, free_port, make_certificates
from .rabbitmq import RabbitServer
from .redis import RedisServer

__all__ = [
    "KafkaServer",
    "RabbitServer",
    "RedisServer",
    "ServerMissing",
    "ServerProcess",
    "free_port",
    "make_certificates",
]
