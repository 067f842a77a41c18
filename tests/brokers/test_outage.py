"""Conformance chaos scenario: a broker outage during publishing, the same on every broker.

Producer asks and tells go on while the broker is stopped and started again (a real
server's stop/start; ``memory://``, which has no server, is taken down with
``troupe.brokers.faults.Outage``). Asserted on each broker: nothing confirmed is
lost (every ask that returned an id is consumed), failures are reported (PublishError
within the delivery timeout, never AskTimeout), a publish reported failed is not stored
later, and the producer logs one line for the outage and one for the recovery, naming
the bridge and the broker; the client library's own noise is thinned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, Backoff
from troupe.brokers import ConsumerBridge, ProducerBridge, PublishError, connect
from troupe.brokers.faults import Outage
from troupe.brokers.message import MESSAGE_ID

DELIVERY_TIMEOUT = 3.0
FAST = Backoff(initial=0.05, maximum=0.5, jitter="equal")
SERVERS = {"redis": "redis_server", "rabbitmq": "rabbitmq_server", "kafka": "kafka_server"}


class Sink(Actor):
    """Records the message id and payload of every delivery."""

    def __init__(self, seen: dict[str, Any]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen[self.headers[MESSAGE_ID]] = message


def switch_for(request: pytest.FixtureRequest, broker_url: str, broker: Any) -> Any:
    """What stops and starts the broker: the session's server, or an Outage for memory://."""
    kind = request.node.callspec.params["broker_url"]
    if kind == "memory":
        return Outage(broker)
    server = request.getfixturevalue(SERVERS[kind])
    if server is None:
        pytest.fail("the outage scenario stops the server: unset TROUPE_KAFKA_BOOTSTRAP")
    return server


@pytest.mark.timeout(300)
async def test_a_broker_outage_during_publishing(
    broker_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    broker = connect(broker_url, journal_dir=tmp_path / "journals")
    switch = switch_for(request, broker_url, broker)
    seen: dict[str, Any] = {}
    confirmed: dict[str, Any] = {}
    failed: list[tuple[Any, float, BaseException]] = []  # payload, seconds taken, error
    try:
        async with ActorSystem(restart=TOLERANT) as system:
            sink = system.spawn(Sink, seen)
            system.spawn(ConsumerBridge, broker, "orders", "g", sink, block=0.2)
            producer = system.spawn(
                ProducerBridge, broker, "orders", delivery_timeout=DELIVERY_TIMEOUT, retry=FAST
            )
            stats = broker.stats.producer(producer.name)
            for n in range(10):
                confirmed[await producer.ask({"before": n}, timeout=None)] = {"before": n}
            stop = asyncio.Event()

            async def asker(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    payload = {"worker": worker, "n": n}
                    began = time.monotonic()
                    try:
                        message_id = await producer.ask(payload, timeout=None)
                    except Exception as exc:  # every failure is recorded, of any kind
                        failed.append((payload, time.monotonic() - began, exc))
                    else:
                        confirmed[message_id] = payload
                    producer.tell({"told": worker, "n": n})
                    n += 1
                    await asyncio.sleep(0.05)

            caplog.clear()
            await asyncio.to_thread(switch.stop)
            askers = [asyncio.create_task(asker(w)) for w in range(3)]
            await asyncio.sleep(DELIVERY_TIMEOUT + 2)  # at least one batch times out
            failures_during_outage = len(failed)
            await asyncio.to_thread(switch.start)
            after = await producer.ask({"after": 1}, timeout=None)  # publishing works again
            confirmed[after] = {"after": 1}
            stop.set()
            await asyncio.gather(*askers)
            assert system.cell_of(producer).restarts == 0  # the bridge never failed
            await eventually(lambda: confirmed.keys() <= seen.keys(), timeout=120)
            await asyncio.sleep(2)  # time for a late store of a failed publish to show
    finally:
        await broker.close()
    # failures were reported as PublishError, within the delivery timeout of the batch
    # that held them (an ask may wait behind one failing batch first)
    assert failures_during_outage > 0
    assert all(isinstance(exc, PublishError) for _, _, exc in failed), failed
    assert max(took for _, took, _ in failed) < 2 * DELIVERY_TIMEOUT + 4
    assert stats.failed >= len(failed)
    # nothing confirmed was lost, and nothing reported failed was stored later
    assert confirmed.keys() <= seen.keys()
    consumed = list(seen.values())
    assert not [payload for payload, _, _ in failed if payload in consumed]
    # one line when publishing started failing and one when it worked again, from the
    # producer, naming the bridge and the broker
    lines = [r for r in caplog.records if r.name == "troupe.brokers.producer"]
    outage = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    recovery = [r.getMessage() for r in lines if "works again" in r.getMessage()]
    assert len(outage) == 1 and len(recovery) == 1, (outage, recovery)
    for line in outage + recovery:
        assert producer.name in line and broker.url in line
    # the client library's reconnect noise is thinned (aiokafka logged ~56 ERROR lines a
    # second of outage before)
    noise = [r for r in caplog.records if r.name.split(".")[0] in ("aiokafka", "pika")]
    assert len([r for r in noise if r.levelno >= logging.WARNING]) <= 40
