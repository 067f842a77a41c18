"""A member hosting ``Tally`` entities, for the multi-process entity tests.

``python entity_member.py URL KIND SIDE_DIR MEMBER [STORE_URL]``

It starts :class:`~troupe.actors.entities.Entities` of ``Tally`` on the broker at URL,
writes ``SIDE_DIR/ready-<pid>`` once started, and runs until SIGTERM (then it drains
and leaves: its shards move to the others) or kill -9. ``STORE_URL`` (a Redis URL) holds
the state and the shard leases when the broker keeps neither (RabbitMQ).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from troupe import ActorSystem
from troupe.actors.entities import Entities, Entity
from troupe.brokers import Broker, connect

#: Kafka: as many partitions as the shard streams elsewhere, a short session timeout.
SHARDS = 6
KAFKA_OPTIONS: dict[str, Any] = {
    "partitions": SHARDS,
    "session_timeout": 3.0,
    "commit_interval": 0.1,
    "rebalance_drain": 2.0,
}
#: Entities options of every member.
OPTIONS: dict[str, Any] = {
    "shards": SHARDS,
    "lease_ttl": 1.5,
    "batch": 500,
    "drain_timeout": 1.0,
    "block": 0.05,
}


class Tally(Entity):
    """Adds each event's amount to the key's total and keeps the sequence numbers seen."""

    def initial_state(self) -> dict[str, Any]:
        return {"total": 0, "seqs": []}

    def handle(self, message: dict[str, Any]) -> None:
        self.state["total"] += message["add"]
        self.state["seqs"].append(message["seq"])


def connect_member(url: str, journals: str | Path | None = None) -> Broker:
    """The broker of a member (Kafka with SHARDS partitions)."""
    options = KAFKA_OPTIONS if url.startswith("kafka") else {}
    return connect(url, journal_dir=journals, **options)


def redis_store(store_url: str) -> tuple[Broker, dict[str, Any]]:
    """A Redis broker and the ``store=`` / ``leases=`` options on it (RabbitMQ members)."""
    from troupe.brokers.redis import RedisShardLeases, RedisStateStore

    redis = connect(store_url)
    return redis, {"store": RedisStateStore(redis), "leases": RedisShardLeases(redis)}  # type: ignore[arg-type]


async def main(url: str, kind: str, side: Path, member: str, store_url: str | None) -> None:
    broker = connect_member(url, side / "journals")
    redis, stored = redis_store(store_url) if store_url else (None, {})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with ActorSystem() as system:
        tallies = Entities(system, broker, Tally, kind=kind, member=member, **OPTIONS, **stored)
        await tallies.start()
        (side / f"ready-{os.getpid()}").write_text(member)
        await stop.wait()
        await tallies.stop()
    await broker.close()
    if redis is not None:
        await redis.close()


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {sys.argv[4]} %(name)s %(message)s"
    )
    (Path(sys.argv[3]) / "journals").mkdir(exist_ok=True)
    store_url = sys.argv[5] if len(sys.argv) > 5 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], store_url))
