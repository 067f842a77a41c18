"""Broker faults for tests: duplicate, redeliver and disconnect on any broker's consumer sessions.

:func:`inject_stream_faults` makes every session a broker opens from now on
apply the stream faults of a :class:`~troupe.testing.FaultInjector`'s plan
(:class:`~troupe.testing.Duplicate`, :class:`~troupe.testing.Redeliver`,
:class:`~troupe.testing.Disconnect`), in a simulation or against a real
server. :class:`SimulatedBroker` is the in-memory broker for simulations: it
keeps time on the simulated loop's virtual clock and takes the running
simulation's injector, so its deliveries follow the seed and the plan.

>>> from troupe.testing import Duplicate, FaultPlan, simulate
>>> from troupe.brokers.testing_faults import SimulatedBroker
>>> async def scenario(sim):
...     broker = SimulatedBroker()
...     session = await broker.consume("s", "g", "c1", window=10)
...     await broker.publish("s", {"n": 1})
...     first = await session.fetch(10, 0)
...     again = await session.fetch(10, 0)      # the duplicate comes with the next fetch
...     return [d.entry_id for d in first + again]
>>> simulate(scenario, seed=1, faults=FaultPlan(Duplicate("s", at=1))).result
['0', '0']

Restarting a real broker and killing a consumer process are done with the
server fixtures (``RedisServer.restart``/``kill`` in :mod:`troupe.brokers.testing`)
and :func:`troupe.supervisors.testing_faults.kill_child`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from troupe.testing import (
    Disconnect,
    Duplicate,
    FaultInjector,
    Redeliver,
    current_simulation,
)

from .base import Broker, BrokerConnectionError
from .memory import MemoryBroker
from .message import Message
from .session import ConsumerSession, Delivery

logger = logging.getLogger(__name__)

_DUPLICATE = (Duplicate,)
_REDELIVER = (Redeliver,)
_DISCONNECT = (Disconnect,)


class FaultySession(ConsumerSession):
    """A consumer session that applies stream faults around the real one."""

    def __init__(self, inner: ConsumerSession, injector: FaultInjector) -> None:
        super().__init__(inner.stream, inner.group, inner.consumer, inner.window)
        self.inner = inner
        self.injector = injector
        self.attempts = inner.attempts
        self._again: list[Delivery] = []

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        injector, stream = self.injector, self.stream
        if injector.decide("stream", stream, allowed=_DISCONNECT) is not None:
            injector.note(stream, "disconnect", self.consumer)
            raise BrokerConnectionError(f"injected disconnect of {self.consumer} from {stream}")
        again, self._again = self._again, []
        if again:
            return again
        out = await self.inner.fetch(limit, timeout)
        for delivery in out:
            if injector.decide("stream", stream, allowed=_DUPLICATE) is not None:
                injector.note(stream, "duplicate", delivery.entry_id)
                self._again.append(dataclasses.replace(delivery))
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        kept: list[Delivery] = []
        for delivery in deliveries:
            if self.injector.decide("stream", self.stream, allowed=_REDELIVER) is not None:
                self.injector.note(self.stream, "lose-ack", delivery.entry_id)
                continue  # the ack is lost: it stays pending, delivered again later
            kept.append(delivery)
        if kept:
            await self.inner.ack(kept)

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        await self.inner.dead_letter(delivery, message)

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        return await self.inner.renew(deliveries)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        await self.inner.release(deliveries)

    async def lag(self) -> int | None:
        return await self.inner.lag()

    async def close(self) -> None:
        await self.inner.close()


def inject_stream_faults(broker: Broker, injector: FaultInjector) -> Broker:
    """Make the sessions ``broker`` opens from now on apply ``injector``'s stream faults
    (the instance's ``consume`` is wrapped; returns the broker)."""
    opened = broker.consume

    async def consume(*args: Any, **kwargs: Any) -> ConsumerSession:
        return FaultySession(await opened(*args, **kwargs), injector)

    broker.consume = consume  # type: ignore[method-assign]
    return broker


class SimulatedBroker(MemoryBroker):
    """The in-memory broker for simulations: virtual time, and the stream faults of the
    running simulation (or of ``injector``). Created outside a simulation without an
    injector it is a plain MemoryBroker."""

    def __init__(
        self, url: str = "memory://", *, injector: FaultInjector | None = None, **options: Any
    ) -> None:
        sim = current_simulation()
        if sim is not None and "clock" not in options:
            loop = sim.open()
            options["clock"] = loop.time
        super().__init__(url, **options)
        self.injector = injector if injector is not None else (sim.injector if sim else None)

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        window: int,
        claim_idle: float = 30.0,
        delay_poll: float = 0.05,
    ) -> ConsumerSession:
        session = await super().consume(
            stream, group, consumer, window=window, claim_idle=claim_idle, delay_poll=delay_poll
        )
        if self.injector is None:
            return session
        return FaultySession(session, self.injector)


__all__ = ["FaultySession", "SimulatedBroker", "inject_stream_faults"]
