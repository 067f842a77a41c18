"""Bridges in the observer: counters, connection, the DLQ with reasons; requeue and delete.

Registered on import of :mod:`troupe.brokers` (see :mod:`troupe.observe`); runs
only when someone looks. The ``bridges`` section lists every consumer and
producer bridge of a system; a consumer's row carries its lag (per partition
where the broker has partitions), in-flight and redelivered counts, the DLQ
size and its newest dead letters with their reasons.

Readiness: every consumer bridge is running and its broker answers (a
``pending`` query within :data:`PROBE_TIMEOUT`). Actions ``requeue_dead``
(publish the dead letter's original bytes and headers to its original stream,
then remove it from the DLQ) and ``delete_dead`` take ``{"bridge", "id"}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from troupe import Child, State, observe

from .base import Broker, BrokerError
from .consumer import ConsumerBridge
from .message import (
    DELIVERIES,
    ERROR_REASON,
    ORIGINAL_ENTRY_ID,
    ORIGINAL_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_STREAM,
    Message,
)
from .producer import ProducerBridge

if TYPE_CHECKING:
    from troupe import ActorSystem

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0  # seconds a broker has to answer the readiness probe
DLQ_READ = 1000  # dead letters counted (the size shows "1000+" past this)
DLQ_SHOWN = 20  # newest dead letters listed with their reasons
_DEAD_HEADERS = frozenset(
    {
        ERROR_REASON,
        ORIGINAL_STREAM,
        ORIGINAL_GROUP,
        ORIGINAL_ENTRY_ID,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        DELIVERIES,
    }
)


def _bridges(system: ActorSystem) -> list[tuple[Child, ConsumerBridge | ProducerBridge]]:
    found = []
    for ref in system.actors():
        child = Child.of(ref)
        actor = child.actor
        if isinstance(actor, ConsumerBridge | ProducerBridge):
            found.append((child, actor))
    return found


def _broker_name(broker: Broker) -> str:
    return broker.capabilities.name


async def _probe(bridge: ConsumerBridge) -> str | None:
    """None when the broker answers in time, else why not."""
    try:
        await asyncio.wait_for(bridge.broker.pending(bridge.stream, bridge.group), PROBE_TIMEOUT)
    except TimeoutError:
        return f"broker {bridge.broker.url} did not answer within {PROBE_TIMEOUT} s"
    except (BrokerError, ConnectionError, OSError) as exc:
        return f"broker {bridge.broker.url} unreachable: {exc}"
    return None


def dead_letter_row(message: Message) -> dict[str, Any]:
    """A dead letter as the observer shows it: id, reason, origin, attempts, body preview."""
    headers = message.headers
    return {
        "id": message.id,
        "reason": headers.get(ERROR_REASON, ""),
        "stream": headers.get(ORIGINAL_STREAM),
        "deliveries": headers.get(DELIVERIES),
        "time": message.timestamp,
        "body": message.body[:200].decode("utf-8", "replace"),
    }


async def _consumer_row(child: Child, bridge: ConsumerBridge) -> dict[str, Any]:
    stats = bridge.stats
    row: dict[str, Any] = {
        "name": child.name,
        "kind": "consumer",
        "broker": _broker_name(bridge.broker),
        "url": bridge.broker.url,
        "stream": bridge.stream,
        "group": bridge.group,
        "state": child.state.name,
        "lag": stats.lag,
        "in_flight": stats.in_flight,
        "delivered": stats.delivered,
        "acked": stats.acked,
        "failed": stats.failed,
        "redelivered": stats.redelivered,
        "dead_lettered": stats.dead_lettered,
        "connection_failures": stats.connection_failures,
        "partitions": [
            {"partition": p, "lag": s.lag, "in_flight": s.in_flight, "committed": s.committed}
            for p, s in sorted(stats.partitions.items())
        ],
    }
    problem = await _probe(bridge) if child.state is State.RUNNING else "bridge not running"
    row["connected"] = problem is None
    row["problem"] = problem
    row["dlq_size"] = None
    row["dead_letters"] = []
    if problem is None and bridge.broker.capabilities.dead_letter:
        try:
            dead = await asyncio.wait_for(
                bridge.broker.dead_letters(bridge.stream, DLQ_READ), PROBE_TIMEOUT
            )
        except (TimeoutError, BrokerError, ConnectionError, OSError) as exc:
            row["problem"] = f"DLQ not read: {exc}"
        else:
            row["dlq_size"] = len(dead)
            row["dead_letters"] = [dead_letter_row(m) for m in reversed(dead[-DLQ_SHOWN:])]
    return row


def _producer_row(child: Child, bridge: ProducerBridge) -> dict[str, Any]:
    stats = bridge.broker.stats.producer(child.name)
    return {
        "name": child.name,
        "kind": "producer",
        "broker": _broker_name(bridge.broker),
        "url": bridge.broker.url,
        "stream": bridge.stream,
        "state": child.state.name,
        "connected": child.state is State.RUNNING,
        "published": stats.published,
        "failed": stats.failed,
        "retries": stats.retries,
    }


async def bridges_section(system: ActorSystem) -> list[dict[str, Any]]:
    """Every bridge of ``system`` (see the module docstring)."""
    rows = []
    for child, bridge in _bridges(system):
        if isinstance(bridge, ConsumerBridge):
            rows.append(await _consumer_row(child, bridge))
        else:
            rows.append(_producer_row(child, bridge))
    return rows


async def bridges_ready(system: ActorSystem) -> list[str]:
    """A consumer bridge that is not running, or whose broker does not answer."""
    problems = []
    for child, bridge in _bridges(system):
        if not isinstance(bridge, ConsumerBridge):
            continue
        if child.state is not State.RUNNING:
            problems.append(f"bridge {child.name}: {child.state.name.lower()}")
            continue
        problem = await _probe(bridge)
        if problem is not None:
            problems.append(f"bridge {child.name}: {problem}")
    return problems


def _consumer(system: ActorSystem, params: Mapping[str, Any]) -> ConsumerBridge:
    name = params.get("bridge")
    for child, bridge in _bridges(system):
        if child.name == name and isinstance(bridge, ConsumerBridge):
            return bridge
    raise observe.ActionError(f"no consumer bridge named {name!r} in system {system.name}")


async def _find_dead(bridge: ConsumerBridge, message_id: Any) -> Message:
    for message in await bridge.broker.dead_letters(bridge.stream, DLQ_READ):
        if message.id == message_id:
            return message
    raise observe.ActionError(f"no dead letter {message_id!r} in the DLQ of {bridge.stream}")


async def requeue_dead(system: ActorSystem, params: Mapping[str, Any]) -> str:
    """Publish a dead letter again (original body, key and headers, same id) to the stream
    it was consumed from, then remove it from the DLQ."""
    bridge = _consumer(system, params)
    dead = await _find_dead(bridge, params.get("id"))
    if dead.raw is not None:
        raise observe.ActionError(f"dead letter {dead.id} was not readable; it cannot be requeued")
    stream = dead.headers.get(ORIGINAL_STREAM) or bridge.stream
    headers = {k: v for k, v in dead.headers.items() if k not in _DEAD_HEADERS}
    again = Message(dead.body, dead.key, headers, dead.id, dead.timestamp)
    try:
        await bridge.broker.publish_messages(stream, [again])
        await bridge.broker.remove_dead(bridge.stream, dead.id)
    except BrokerError as exc:
        raise observe.ActionError(str(exc)) from None
    return f"requeued {dead.id} to {stream}"


async def delete_dead(system: ActorSystem, params: Mapping[str, Any]) -> str:
    """Remove a dead letter from the DLQ for good."""
    bridge = _consumer(system, params)
    dead = await _find_dead(bridge, params.get("id"))
    try:
        await bridge.broker.remove_dead(bridge.stream, dead.id)
    except BrokerError as exc:
        raise observe.ActionError(str(exc)) from None
    return f"deleted {dead.id} from the DLQ of {bridge.stream}"


observe.add_section("bridges", bridges_section)
observe.add_readiness("bridges", bridges_ready)
observe.add_action("requeue_dead", requeue_dead)
observe.add_action("delete_dead", delete_dead)
