"""Broker faults for tests: duplicate, redeliver and disconnect on any broker's consumer sessions.

:func:`inject_stream_faults` makes every session a broker opens from now on
apply the stream faults of a :class:`~troupe.testing.FaultInjector`'s plan
(:class:`~troupe.testing.Duplicate`, :class:`~troupe.testing.Redeliver`,
:class:`~troupe.testing.Disconnect`), in a simulation or against a real
server. :class:`SimulatedBroker` is the in-memory broker for simulations: it
keeps time on the simulated loop's virtual clock and takes the running
simulation's injector, so its deliveries follow the seed and the plan.

>>> from troupe.testing import Duplicate, FaultPlan, simulate
>>> from troupe.brokers.faults import SimulatedBroker
>>> async def scenario(sim):
...     broker = SimulatedBroker()
...     session = await broker.consume("s", "g", "c1", window=10)
...     await broker.publish("s", {"n": 1})
...     first = await session.fetch(10, 0)
...     again = await session.fetch(10, 0)      # the duplicate comes with the next fetch
...     return [d.entry_id for d in first + again]
>>> simulate(scenario, seed=1, faults=FaultPlan(Duplicate("s", at=1))).result
['0', '0']

:class:`Outage` takes a broker of this process (``memory://``) down and up again, as
the server fixtures' ``stop``/``start`` do for a real one. Restarting a real broker and
killing a consumer process are done with the server fixtures
(``RedisServer.restart``/``kill`` in :mod:`troupe.brokers.servers`) and
:func:`troupe.supervisors.testing_faults.kill_child`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from troupe.testing import (
    Disconnect,
    Duplicate,
    FaultInjector,
    FaultPlan,
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


class Outage:
    """A broker in this process (``memory://``, which has no server to stop) taken down and
    up again, with the ``stop``/``start``/``restart`` of the server fixtures.

    While down, publishes and new sessions of ``broker`` fail as a lost connection
    (:class:`~troupe.brokers.BrokerConnectionError`) and so does every call of a session
    opened before; nothing is stored. Up again, everything works as before (the
    memory broker keeps its streams, as a real broker's disk does).

    >>> import asyncio
    >>> from troupe.brokers import MemoryBroker
    >>> async def main():
    ...     broker = MemoryBroker()
    ...     outage = Outage(broker)
    ...     outage.stop()
    ...     try:
    ...         await broker.publish("s", 1)
    ...     except BrokerConnectionError as exc:
    ...         print(exc)
    ...     outage.start()
    ...     return len(await broker.read_stream("s"))
    >>> asyncio.run(main())
    memory:// is down (an Outage of the test)
    0
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.down = False
        self.outages = 0
        publish_once, opened = broker._publish_once, broker.consume
        append, schedule = broker._append, broker._schedule

        async def guarded_publish_once(*args: Any, **kwargs: Any) -> list[str]:
            self.check()
            return await publish_once(*args, **kwargs)

        async def guarded_append(*args: Any, **kwargs: Any) -> list[str]:
            self.check()
            return await append(*args, **kwargs)

        async def guarded_schedule(*args: Any, **kwargs: Any) -> None:
            self.check()
            await schedule(*args, **kwargs)

        async def consume(*args: Any, **kwargs: Any) -> ConsumerSession:
            self.check()
            return _OutageSession(await opened(*args, **kwargs), self)

        broker._publish_once = guarded_publish_once  # type: ignore[method-assign]
        broker._append = guarded_append  # type: ignore[method-assign]
        broker._schedule = guarded_schedule  # type: ignore[method-assign]
        broker.consume = consume  # type: ignore[method-assign]

    def check(self) -> None:
        """Raise BrokerConnectionError while the broker is down."""
        if self.down:
            raise BrokerConnectionError(f"{self.broker.url} is down (an Outage of the test)")

    def stop(self) -> None:
        """Take the broker down."""
        if not self.down:
            self.down = True
            self.outages += 1

    def start(self) -> None:
        """Bring the broker back."""
        self.down = False

    def restart(self, down_for: float = 0.0) -> None:
        """Down and up again (``down_for`` seconds between, blocking like the servers')."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()


class _OutageSession(FaultySession):
    """A session whose calls fail while its broker is down."""

    def __init__(self, inner: ConsumerSession, outage: Outage) -> None:
        super().__init__(inner, FaultInjector(FaultPlan()))
        self.outage = outage

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        self.outage.check()
        return await self.inner.fetch(limit, timeout)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.outage.check()
        await self.inner.ack(deliveries)

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        self.outage.check()
        await self.inner.dead_letter(delivery, message)

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        self.outage.check()
        return await self.inner.renew(deliveries)


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


__all__ = ["FaultySession", "Outage", "SimulatedBroker", "inject_stream_faults"]
