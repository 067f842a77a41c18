"""Process trees on several hosts as one logical system, through a broker.

``troupe run TARGET --broker URL`` puts every process of the tree in the *cluster*
``--cluster NAME`` (default ``troupe``) on that broker: each process holds a
heartbeat lease on the cluster's membership (``troupe.cluster.<NAME>``), serves the
actors named by ``--export NAME[=ACTOR]`` under those names once its tree is built
(see :func:`troupe.actors.export`), and reaches any name exported by another tree
with :meth:`Cluster.remote`. A tree's build function finds its cluster with
:func:`cluster_of`::

    async def build(system):
        orders = system.spawn(Orders, name="orders")
        cluster = cluster_of(system)              # troupe run ... --broker URL
        await cluster.export(orders, "orders.service")
        payments = cluster.remote("payments.service")  # served by another tree

A process that is not a ``troupe run`` child (a script, a web app, the demo) joins
with :func:`join`. A tree that dies (kill -9 included) drops out of
:meth:`Cluster.members` once its leases expire, and ``watch`` on its exported
names delivers ``Terminated``.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from dataclasses import dataclass
from typing import Any

from troupe import ActorRef, ActorSystem
from troupe.brokers import Broker, connect
from troupe.brokers.redaction import redact
from troupe.errors import ConfigError
from troupe.supervisors import ChildHooks, ProcessHooks

from .remote import remote_node
from .remote_members import Member
from .remote_node import RemoteNode
from .remote_ref import RemoteRef

#: The environment variable a tree's children read their cluster settings from (JSON).
ENV_CLUSTER = "TROUPE_CLUSTER"
#: The membership lease name of cluster NAME is ``MEMBERSHIP + NAME``.
MEMBERSHIP = "troupe.cluster."
DEFAULT_CLUSTER = "troupe"

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # legal in stream, queue and topic names


def _check_name(setting: str, name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            setting, f"must be letters, digits, '.', '_' or '-' (a broker topic name), got {name!r}"
        )


def parse_export(text: str) -> tuple[str, str]:
    """``"NAME=ACTOR"`` -> ``(NAME, ACTOR)``; ``"NAME"`` exports the actor called NAME.

    >>> parse_export("orders.service=orders")
    ('orders.service', 'orders')
    >>> parse_export("payments")
    ('payments', 'payments')
    """
    name, _, actor = text.partition("=")
    name, actor = name.strip(), actor.strip() or name.strip()
    _check_name("export", name)
    if not actor:
        raise ConfigError("export", f"{text!r}: write NAME or NAME=ACTOR")
    return name, actor


@dataclass(frozen=True)
class ClusterSettings:
    """Where a tree joins: the broker URL, the cluster name, the actors it exports
    (``(name on the broker, actor name in each process)``), and the lease timing (a
    member is gone ``heartbeat * missed`` seconds after its last heartbeat).

    Every setting is checked here; a bad one raises ConfigError naming it."""

    broker: str
    name: str = DEFAULT_CLUSTER
    exports: tuple[tuple[str, str], ...] = ()
    heartbeat: float = 1.0
    missed: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.broker, str) or "://" not in self.broker:
            raise ConfigError(
                "broker",
                f"must be a broker URL (redis://, amqp://, kafka://, memory://), got "
                f"{redact(str(self.broker))!r}",
            )
        try:
            connect(self.broker)  # parses the URL and its options; connects later
        except ConfigError as exc:
            raise ConfigError("broker", exc.problem) from None
        except ValueError as exc:
            raise ConfigError("broker", f"{redact(self.broker)}: {exc}") from None
        if self.broker.startswith("memory:"):
            raise ConfigError(
                "broker", "memory:// lives in one process; trees join through a real broker"
            )
        _check_name("cluster", self.name)
        object.__setattr__(self, "exports", tuple((str(n), str(a)) for n, a in self.exports))
        names = [name for name, _ in self.exports]
        for name in names:
            _check_name("export", name)
        if len(set(names)) != len(names):
            raise ConfigError("export", f"a name is exported twice: {names}")
        if isinstance(self.heartbeat, bool) or not (
            isinstance(self.heartbeat, int | float) and self.heartbeat > 0
        ):
            raise ConfigError(
                "heartbeat", f"must be a positive number of seconds, got {self.heartbeat!r}"
            )
        if isinstance(self.missed, bool) or not isinstance(self.missed, int) or self.missed < 2:
            raise ConfigError(
                "missed", f"must be a whole number of at least 2, got {self.missed!r}"
            )

    def to_json(self) -> str:
        """The settings as the JSON a child reads from ``$TROUPE_CLUSTER``."""
        return json.dumps(
            {
                "broker": self.broker,
                "name": self.name,
                "exports": [list(pair) for pair in self.exports],
                "heartbeat": self.heartbeat,
                "missed": self.missed,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterSettings:
        """Settings from :meth:`to_json` (ConfigError naming ``TROUPE_CLUSTER`` when malformed)."""
        try:
            data = json.loads(text)
            return cls(
                broker=data["broker"],
                name=data.get("name", DEFAULT_CLUSTER),
                exports=tuple(tuple(pair) for pair in data.get("exports", ())),
                heartbeat=data.get("heartbeat", 1.0),
                missed=data.get("missed", 3),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(ENV_CLUSTER, f"not cluster settings: {exc}") from None


class Cluster:
    """This process's place in a cluster: its node on the broker, exports and remote refs."""

    def __init__(self, settings: ClusterSettings, node: RemoteNode, *, owns_broker: bool) -> None:
        self.settings = settings
        self.node = node
        self.owns_broker = owns_broker

    @property
    def name(self) -> str:
        """The cluster's name."""
        return self.settings.name

    @property
    def system(self) -> ActorSystem:
        return self.node.system

    @property
    def broker(self) -> Broker:
        return self.node.broker

    @property
    def member_id(self) -> str:
        """This process's member id (``<system name>-<pid>-<random>``)."""
        return self.node.id

    def remote(self, name: str) -> RemoteRef:
        """A ref to the actor exported as ``name`` by any process of the cluster."""
        self.node.view(name)
        return RemoteRef(self.node, export=name)

    async def export(self, ref: ActorRef, name: str, **bridge_options: Any) -> None:
        """Serve ``ref`` as ``name`` to the cluster (see :func:`troupe.actors.export`)."""
        _check_name("name", name)
        await self.node.export(ref, name, **bridge_options)

    def members(self) -> list[Member]:
        """The cluster's processes with a live lease, as this process sees them now."""
        return sorted(self.node.view(MEMBERSHIP + self.name).live(), key=lambda m: m.id)

    async def close(self) -> None:
        """Leave the cluster (the others see this member go at once)."""
        await self.node.leave(MEMBERSHIP + self.name)
        _clusters.pop(self.system, None)
        if self.owns_broker:
            await self.broker.close()


_clusters: weakref.WeakKeyDictionary[ActorSystem, Cluster] = weakref.WeakKeyDictionary()


def cluster_of(system: ActorSystem) -> Cluster:
    """The cluster ``system`` joined (``troupe run --broker``, or :func:`join`)."""
    found = _clusters.get(system)
    if found is None:
        raise LookupError(
            f"actor system {system.name!r} is in no cluster: run its tree with "
            "`troupe run TARGET --broker URL`, or call troupe.actors.cluster.join"
        )
    return found


async def join(
    system: ActorSystem, settings: ClusterSettings, *, broker: Broker | None = None
) -> Cluster:
    """Join ``system`` to the cluster ``settings`` name (connecting to its broker unless
    ``broker`` is given); its actors in ``settings.exports`` are exported by
    :func:`export_declared` (call it once they run)."""
    if system in _clusters:
        raise ConfigError("cluster", f"actor system {system.name!r} already joined a cluster")
    owned = broker is None
    if broker is None:
        broker = connect(settings.broker)
    try:
        await broker.connect()
        node = remote_node(system, broker, heartbeat=settings.heartbeat, missed=settings.missed)
        await node.join(MEMBERSHIP + settings.name)
    except BaseException:
        if owned:
            await broker.close()
        raise
    found = _clusters[system] = Cluster(settings, node, owns_broker=owned)
    return found


async def export_declared(cluster: Cluster) -> None:
    """Export the actors ``cluster.settings.exports`` names; ConfigError naming ``export``
    when the process has no actor of that name."""
    for name, actor in cluster.settings.exports:
        ref = cluster.system.find(actor)
        if ref is None:
            known = sorted(
                r.name for r in cluster.system.actors() if not r.name.startswith("troupe.")
            )
            raise ConfigError(
                "export",
                f"{name}={actor}: this tree has no actor named {actor!r} "
                f"(its actors: {', '.join(known) or 'none'})",
            )
        await cluster.export(ref, name)


class ClusterHooks(ProcessHooks):
    """Process hooks that put every child of a tree in the cluster ``settings`` describe
    (``troupe run --broker`` adds them)."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings

    def child_environment(self) -> dict[str, str]:
        return {ENV_CLUSTER: self.settings.to_json()}

    def child_hooks(self) -> list[str]:
        return [f"{__name__}:ClusterChild"]


class ClusterChild(ChildHooks):
    """In a child: join the cluster before the tree is built, export after, close after."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None

    async def tree_building(self, system: ActorSystem) -> None:
        text = os.environ.get(ENV_CLUSTER)
        if not text:
            raise ConfigError(ENV_CLUSTER, "not set: the root did not pass cluster settings")
        self.cluster = await join(system, ClusterSettings.from_json(text))

    async def tree_built(self, system: ActorSystem) -> None:
        assert self.cluster is not None
        await export_declared(self.cluster)

    async def tree_stopped(self, system: ActorSystem) -> None:
        if self.cluster is not None:
            _clusters.pop(system, None)
            if self.cluster.owns_broker:
                await self.cluster.broker.close()


__all__ = [
    "DEFAULT_CLUSTER",
    "ENV_CLUSTER",
    "MEMBERSHIP",
    "Cluster",
    "ClusterChild",
    "ClusterHooks",
    "ClusterSettings",
    "cluster_of",
    "export_declared",
    "join",
    "parse_export",
]
