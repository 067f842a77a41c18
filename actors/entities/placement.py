"""Where entities live: by the consumer group's partitions, or by fenced shard leases.

- :class:`PartitionPlacement` (Kafka: a broker whose capabilities have ``offsets``): one
  :class:`~troupe.brokers.ConsumerBridge` on the entity type's topic; the group member
  that owns a key's partition hosts the key's entity. The bridge's
  :class:`~troupe.brokers.session.OwnershipListener` keeps the owned partitions: on a
  revoke (after the revoked partitions' messages in hand were handled and saved) their
  entities are passivated and the store forgets the partitions' tables.
- :class:`LeasePlacement` (Redis, memory; any broker with a :class:`ShardLeases`): a
  fixed number of shard streams ``<kind>.<shard>``; every ``lease_ttl / 3`` seconds the
  member heartbeats, renews its leases, and takes free shards up to its fair share
  (``ceil(shards / live members)``) or gives back the ones past it. Each owned shard has
  its own host and bridge (consumer ``<kind>.<shard>``: the next owner resumes the
  pending entries at once, in order); saves carry the lease's fencing token.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from troupe.actor import Actor
from troupe.brokers import ConsumerBridge
from troupe.brokers.message import ENTRY_ID
from troupe.brokers.state import Fence, ShardLeases
from troupe.props import Props
from troupe.ref import ActorRef

from .host import EntityHost, EntitySettings

logger = logging.getLogger(__name__)

RESTART_DELAY = 0.5  # seconds before a consumer stopped by a failed save starts again


class _Restart:
    """Placement's own message: start the bridge again after a failed save."""


class PartitionPlacement(Actor):
    """Entities placed by the consumer group's partition assignment (Kafka)."""

    def __init__(self, settings: EntitySettings, member: str, **bridge: Any) -> None:
        self.settings = settings
        self.member = member
        self.bridge_options = bridge
        self.owned: set[int] = set()
        self.host: EntityHost | None = None
        self.host_ref: ActorRef | None = None
        self.bridge_ref: ActorRef | None = None
        self._restarting = False

    # ShardAccess -------------------------------------------------------------------------

    def shard_of(self, headers: Mapping[str, str]) -> int:
        return int(headers[ENTRY_ID].split(":", 1)[0])

    def owns(self, shard: int) -> bool:
        return shard in self.owned

    def fence(self, shard: int) -> Fence | None:
        return None

    def save_failed(self, shard: int, error: BaseException) -> None:
        if not self._restarting:
            self._restarting = True
            self.ref.tell(_Restart())

    def host_failed(self, error: BaseException) -> None:
        self.save_failed(-1, error)

    # OwnershipListener -------------------------------------------------------------------

    def assigned(self, partitions: Sequence[int]) -> None:
        self.owned.update(partitions)

    async def revoked(self, partitions: Sequence[int]) -> None:
        self.owned.difference_update(partitions)
        if self.host is not None:
            await self.host.passivate_shards(partitions)
        for partition in partitions:
            await self.settings.store.release(self.settings.kind, partition)

    # actor -------------------------------------------------------------------------------

    def _make_host(self) -> EntityHost:
        self.host = EntityHost(self.settings, self)
        return self.host

    def on_start(self) -> None:
        self._start_host()
        self._start_bridge()

    def _start_host(self) -> None:
        self.host_ref = self.spawn(Props(self._make_host), name=f"{self.name}.host")

    def _start_bridge(self) -> None:
        settings = self.settings
        options = {"batch": settings.batch, **self.bridge_options}
        self.bridge_ref = self.spawn(
            ConsumerBridge,
            settings.broker,
            settings.kind,
            settings.kind,
            self.host_ref,
            consumer=self.member,
            ownership=self,
            **options,
        )

    async def receive(self, message: Any) -> None:
        if isinstance(message, _Restart):
            bridge, self.bridge_ref = self.bridge_ref, None
            if bridge is not None:
                await bridge.stop()
            for partition in list(self.owned):
                await self.revoked([partition])
            host, self.host_ref = self.host_ref, None
            if host is not None:
                await host.stop()  # a failed host rejects all: a new one takes over
            await self.system.clock.sleep(RESTART_DELAY)
            self._restarting = False
            self._start_host()
            self._start_bridge()


@dataclass
class _Shard:
    """One shard this member owns: the lease's token, its host and bridge."""

    token: int
    host: ActorRef
    bridge: ActorRef


class _ShardAccess:
    """The ShardAccess of one shard's host under a lease placement."""

    def __init__(self, placement: LeasePlacement, shard: int) -> None:
        self.placement = placement
        self.shard = shard

    def shard_of(self, headers: Mapping[str, str]) -> int:
        return self.shard

    def owns(self, shard: int) -> bool:
        return self.placement.held(shard) is not None

    def fence(self, shard: int) -> Fence | None:
        owned = self.placement.held(shard)
        return Fence(shard, owned.token if owned is not None else 0)

    def save_failed(self, shard: int, error: BaseException) -> None:
        self.placement.ref.tell(_Give(shard, lost=True))

    def host_failed(self, error: BaseException) -> None:
        self.placement.ref.tell(_Give(self.shard, lost=True))


@dataclass(frozen=True)
class _Give:
    """Placement's own message: stop hosting ``shard`` (``lost``: its lease or a save)."""

    shard: int
    lost: bool = False


_TICK = object()


class LeasePlacement(Actor):
    """Entities placed on shard streams owned through fenced leases (Redis, memory)."""

    def __init__(
        self,
        settings: EntitySettings,
        member: str,
        leases: ShardLeases,
        shards: int,
        lease_ttl: float,
        **bridge: Any,
    ) -> None:
        self.settings = settings
        self.member = member
        self.leases = leases
        self.shard_count = shards
        self.lease_ttl = lease_ttl
        self.bridge_options = bridge
        self.shards: dict[int, _Shard] = {}
        self.draining: dict[int, _Shard] = {}  # given up, still stopping
        self.tasks: set[asyncio.Task[None]] = set()
        self.leaving = False

    def stream(self, shard: int) -> str:
        """The stream of ``shard``."""
        return f"{self.settings.kind}.{shard}"

    def on_start(self) -> None:
        self.ref.tell(_TICK)
        self.timers.every(self.lease_ttl / 3, _TICK, key="tick")

    def held(self, shard: int) -> _Shard | None:
        """The lease and actors of ``shard`` while this member holds it (also draining)."""
        return self.shards.get(shard) or self.draining.get(shard)

    async def on_stop(self) -> None:
        self.leaving = True
        for shard in list(self.shards):
            self._give(shard, lost=False)
        if self.tasks:
            await asyncio.wait(set(self.tasks))
        try:
            await self.leases.leave(self.settings.kind, self.member)
        except Exception as exc:  # the broker is gone: the heartbeat expires by itself
            logger.warning("entity member %s could not leave: %r", self.member, exc)

    async def receive(self, message: Any) -> None:
        if isinstance(message, _Give):
            self._give(message.shard, lost=message.lost)
        elif message is _TICK and not self.leaving:
            await self._tick()

    async def _tick(self) -> None:
        kind, leases, ttl = self.settings.kind, self.leases, self.lease_ttl
        try:
            members = await leases.heartbeat(kind, self.member, ttl=ttl)
            for shard, owned in [*self.shards.items(), *self.draining.items()]:
                if not await leases.renew(kind, shard, owned.token, ttl=ttl):
                    logger.warning("entity member %s lost %s shard %d", self.member, kind, shard)
                    self._give(shard, lost=True)
        except Exception as exc:
            logger.warning("entity member %s: lease round failed: %r", self.member, exc)
            return
        if self.member not in members:
            members = sorted({*members, self.member})
        share = math.ceil(self.shard_count / len(members))
        while len(self.shards) > share:
            self._give(max(self.shards), lost=False)
        if len(self.shards) >= share:
            return
        start = members.index(self.member) * share
        for i in range(self.shard_count):
            shard = (start + i) % self.shard_count
            if self.held(shard) is not None:
                continue
            try:
                token = await leases.acquire(kind, shard, self.member, ttl=ttl)
            except Exception as exc:
                logger.warning("entity member %s: acquire failed: %r", self.member, exc)
                return
            if token is not None:
                self._take(shard, token)
                if len(self.shards) >= share:
                    return

    def _take(self, shard: int, token: int) -> None:
        settings = self.settings
        access = _ShardAccess(self, shard)
        name = f"{self.name}.{shard}"  # the same for each lease: the last one has stopped
        host = self.spawn(EntityHost, settings, access, name=f"{name}.host")
        options = {"batch": settings.batch, **self.bridge_options}
        bridge = self.spawn(
            ConsumerBridge,
            settings.broker,
            self.stream(shard),
            settings.kind,
            host,
            consumer=self.stream(shard),
            name=f"{name}.bridge",
            **options,
        )
        self.shards[shard] = _Shard(token, host, bridge)
        logger.info(
            "entity member %s hosts %s shard %d (lease %d)", self.member, settings.kind, shard,
            token,
        )

    def _give(self, shard: int, *, lost: bool) -> None:
        """Stop hosting ``shard`` in the background; its lease is renewed until released."""
        owned = self.shards.pop(shard, None)
        if owned is None:
            return
        self.draining[shard] = owned
        task = asyncio.get_running_loop().create_task(self._drain(shard, owned, lost))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drain(self, shard: int, owned: _Shard, lost: bool) -> None:
        kind = self.settings.kind
        try:
            await owned.bridge.stop()  # drain: the messages in hand are handled and saved
            await owned.host.stop()  # passivates the shard's entities
            await self.settings.store.release(kind, shard)
            await self.leases.release(kind, shard, owned.token)  # ignored once lost
        except Exception as exc:
            logger.warning(
                "entity member %s: release of shard %d failed: %r", self.member, shard, exc
            )
        finally:
            self.draining.pop(shard, None)
        if lost:
            logger.info("entity member %s gave up %s shard %d", self.member, kind, shard)


__all__ = ["LeasePlacement", "PartitionPlacement"]
