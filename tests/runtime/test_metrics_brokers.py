"""Broker bridges on the in-memory broker: their counters on /metrics, traces end to end."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, MemoryBroker, ProducerBridge
from troupe.metrics import watch_broker
from troupe.supervisors import Backoff
from troupe.tracing import TRACEPARENT, TraceContext, current_trace

ROOT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FAST_RETRY = Backoff(initial=0.001, maximum=0.01, jitter="none")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Billing(Actor):
    """Records (payload, trace); refuses "bad" every time."""

    def __init__(self, seen: list[tuple[Any, TraceContext | None]]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        if message == "bad":
            raise ValueError("bad order")
        self.seen.append((message, current_trace()))


class Checkout(Actor):
    """A traced handler that publishes through the producer bridge."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def receive(self, message: Any) -> None:
        self.producer.tell(message)


async def test_bridge_counters_are_exported_and_traces_cross_the_broker() -> None:
    seen: list[tuple[Any, TraceContext | None]] = []
    broker = MemoryBroker()
    async with ActorSystem("shop", metrics_port=0) as system:
        assert system.metrics_endpoint is not None
        watch_broker(system, broker)
        watch_broker(system, broker)  # once is enough; twice changes nothing
        producer = system.spawn(ProducerBridge, broker, "orders", name="orders-out")
        checkout = system.spawn(Checkout, producer)
        billing = system.spawn(Billing, seen, name="billing")
        system.spawn(
            ConsumerBridge,
            broker,
            "orders",
            "billing",
            billing,
            max_deliveries=2,
            retry=FAST_RETRY,
            block=0.05,
        )
        for n in range(5):
            checkout.tell(n, headers={TRACEPARENT: ROOT})
        checkout.tell("bad")
        await eventually(lambda: len(seen) == 5)
        url = system.metrics_endpoint.url

        def settled() -> bool:
            samples = scrape(url)
            return samples.get(dead_lettered, 0) == 1 and samples.get(acked, 0) == 5

        labels = (("bridge", "orders/billing"), ("broker", "memory"))
        dead_lettered = ("troupe_broker_dead_lettered_total", labels)
        acked = ("troupe_broker_acked_total", labels)
        await eventually(settled)
        samples = scrape(url)
    assert samples[("troupe_broker_consumed_total", labels)] == 7  # "bad" was delivered twice
    assert samples[("troupe_broker_redeliveries_total", labels)] == 1
    assert samples[("troupe_broker_in_flight", labels)] == 0
    out = (("bridge", "orders-out"), ("broker", "memory"))
    assert samples[("troupe_broker_published_total", out)] == 6
    assert samples[("troupe_broker_publish_confirms_total", out)] == 6
    assert samples[("troupe_broker_publish_failures_total", out)] == 0
    failed = ("troupe_messages_total", (("actor", "billing"), ("outcome", "failed")))
    assert samples[failed] == 2
    # the trace started before the producer bridge reached the consumer's target
    assert sorted(n for n, _ in seen) == [0, 1, 2, 3, 4]
    assert all(t is not None and t.trace_id == ROOT[3:35] for _, t in seen)
