"""Per-partition broker gauges (``troupe_broker_partition_*``) from fake consumer stats."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from troupe.metrics.brokers import BrokerCopier
from troupe.metrics.export import TroupeCollector
from troupe.metrics.store import SlotSnapshot, SlotStore


@dataclass
class FakePartition:
    lag: int | None = None
    in_flight: int = 0


@dataclass
class FakeConsumer:
    delivered: int = 0
    acked: int = 0
    redelivered: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    lag: int | None = None
    partitions: dict[int, FakePartition] = field(default_factory=dict)


@dataclass
class FakeStats:
    consumers: dict[tuple[str, str, str], FakeConsumer] = field(default_factory=dict)
    producers: dict[str, object] = field(default_factory=dict)


class KafkaBroker:
    def __init__(self) -> None:
        self.stats = FakeStats()


Series = dict[tuple[str, str, str], float]


def scrape(copier: BrokerCopier, store: SlotStore) -> dict[str, Series]:
    def source() -> list[SlotSnapshot]:
        copier(store)
        return [SlotSnapshot(s.key, s.values.tolist(), True) for s in store.slots()]

    registry = CollectorRegistry()
    registry.register(TroupeCollector([source]))
    text = generate_latest(registry).decode()
    out: dict[str, Series] = {"lag": {}, "in_flight": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("troupe_broker_partition_"):
                which = s.name.removeprefix("troupe_broker_partition_")
                out[which][(s.labels["bridge"], s.labels["broker"], s.labels["partition"])] = (
                    s.value
                )
    return out


def test_partition_lag_and_in_flight_are_exported_and_drop_when_revoked() -> None:
    broker = KafkaBroker()
    a = broker.stats.consumers[("orders", "billing", "a")] = FakeConsumer()
    b = broker.stats.consumers[("orders", "billing", "b")] = FakeConsumer()
    a.partitions = {0: FakePartition(lag=7, in_flight=2), 1: FakePartition(lag=None)}
    b.partitions = {2: FakePartition(lag=3, in_flight=1), 0: FakePartition(lag=4, in_flight=1)}
    copier = BrokerCopier()
    copier.watch(broker, "kafka")
    store = SlotStore()

    got = scrape(copier, store)
    assert got["lag"] == {
        ("orders/billing", "kafka", "0"): 7,  # the largest any member reported
        ("orders/billing", "kafka", "2"): 3,
    }  # partition 1's lag is not known yet: no series
    assert got["in_flight"] == {
        ("orders/billing", "kafka", "0"): 3,  # summed over members
        ("orders/billing", "kafka", "1"): 0,
        ("orders/billing", "kafka", "2"): 1,
    }

    # everything handled; b lost its partitions in a rebalance
    a.partitions = {0: FakePartition(lag=0), 1: FakePartition(lag=0)}
    b.partitions = {}
    got = scrape(copier, store)
    assert set(got["lag"].values()) == {0}
    assert set(got["lag"]) == {("orders/billing", "kafka", p) for p in "01"}
    assert got["in_flight"] == {("orders/billing", "kafka", p): 0 for p in "012"}


def test_partition_series_per_bridge_are_capped() -> None:
    broker = KafkaBroker()
    c = broker.stats.consumers[("t", "g", "c")] = FakeConsumer()
    c.partitions = {p: FakePartition(lag=p, in_flight=1) for p in range(10)}
    other = broker.stats.consumers[("u", "g", "c")] = FakeConsumer()
    other.partitions = {0: FakePartition(lag=5)}
    copier = BrokerCopier(max_partitions=4)
    copier.watch(broker, "kafka")
    store = SlotStore()
    got = scrape(copier, store)
    assert got["lag"] == {
        **{("t/g", "kafka", str(p)): p for p in range(4)},
        ("u/g", "kafka", "0"): 5,  # the cap is per bridge
    }
    c.partitions = {p: FakePartition(lag=1) for p in range(5, 10)}  # new ones stay out
    got = scrape(copier, store)
    assert set(got["in_flight"]) == {("t/g", "kafka", str(p)) for p in range(4)} | {
        ("u/g", "kafka", "0")
    }
    assert all(v == 0 for k, v in got["in_flight"].items())
