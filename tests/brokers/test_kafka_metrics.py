"""Kafka per-partition lag and in-flight on /metrics (``troupe_broker_partition_*``)."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client.parser import text_string_to_metric_families

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, MailboxConfig
from troupe.brokers import ConsumerBridge, connect
from troupe.brokers.kafka import KafkaBroker
from troupe.metrics import watch_broker

PartitionSeries = dict[str, dict[str, float]]  # metric suffix -> {partition: value}


class Gated(Actor):
    """Handles nothing until ``gate`` is set; a small mailbox keeps a backlog on Kafka."""

    mailbox: ClassVar[MailboxConfig | None] = MailboxConfig(capacity=4)

    def __init__(self, gate: asyncio.Event, done: list[Any]) -> None:
        self.gate = gate
        self.done = done

    async def receive(self, message: Any) -> None:
        await self.gate.wait()
        self.done.append(message)


def scrape(url: str, bridge: str) -> PartitionSeries:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: PartitionSeries = {"lag": {}, "in_flight": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name.removeprefix("troupe_broker_partition_")
            if name in out and s.labels["bridge"] == bridge:
                assert s.labels["broker"] == "kafka"
                out[name][s.labels["partition"]] = s.value
    return out


async def test_partition_lag_and_in_flight_on_metrics_drop_to_zero_after_consumption(
    kafka_url: str, tmp_path: Path
) -> None:
    broker = connect(kafka_url, journal_dir=tmp_path / "journals", partitions=4)
    assert isinstance(broker, KafkaBroker)
    await broker.publish_messages("m", [broker.message(i, key=f"k{i % 8}") for i in range(200)])
    gate = asyncio.Event()
    done: list[Any] = []
    async with ActorSystem("kafka-metrics", restart=TOLERANT, metrics_port=0) as system:
        assert system.metrics_endpoint is not None
        url = system.metrics_endpoint.url
        watch_broker(system, broker)
        target = system.spawn(Gated, gate, done)
        system.spawn(ConsumerBridge, broker, "m", "g", target, consumer="c", block=0.05)

        def backlog() -> bool:
            got = scrape(url, "m/g")
            return (
                len(got["lag"]) == 4
                and sum(got["lag"].values()) >= 195
                and sum(got["in_flight"].values()) >= 1
            )

        await eventually(backlog, in_thread=True, interval=0.05)
        got = await asyncio.to_thread(scrape, url, "m/g")
        assert set(got["in_flight"]) == {"0", "1", "2", "3"}
        assert any(lag > 0 for lag in got["lag"].values())
        assert sum(got["in_flight"].values()) <= 5  # 4 queued + 1 being handled
        gate.set()
        await eventually(lambda: len(done) == 200)

        def drained() -> bool:
            got = scrape(url, "m/g")
            return (
                len(got["lag"]) == 4
                and all(v == 0 for v in got["lag"].values())
                and all(v == 0 for v in got["in_flight"].values())
            )

        await eventually(drained, in_thread=True, interval=0.05)
    await broker.close()
