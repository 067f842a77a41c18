"""The harness the broker benchmarks share: what a user runs, timed in interleaved rounds.

The troupe side is what a user wires: ``ProducerBridge`` asks (each ask waits for
the broker's confirmation; ``WINDOW`` asks in flight at a time) -> broker ->
``ConsumerBridge`` -> a counting actor, with JSON payloads (``PAYLOAD``, the
broker's default serializer) and default bridge and broker settings. Each peer
(a raw client loop, FastStream's batch subscriber) decodes the same JSON, acks
after its handler ran and publishes with the same confirmations.

Every side runs under ``troupe.run`` (uvloop when installed, and its garbage
collector threshold: the raw sides get the same). A side is an
``async def side(url, n, name) -> Timing``: it sets up (not timed), calls
``watch.start()``, does the work, and returns ``watch.stop()``: wall
seconds and this process's CPU seconds (every thread of it: client I/O threads
count; the broker server is another process). ``rounds`` runs every side once
to warm up, then ``repeat`` rounds in which every side runs once, the order
rotating from round to round; a row reports the median rate of each side, the
median of the per-round ratios troupe/peer (both ran back to back under the
same load) and the median CPU microseconds per message; a consume-only row also gives,
for the sides that record it (``Stopwatch.stop(first)``), the median time from the
start to the first message handled (``first_message_ms_median``: a consumer joining,
reading what it needs and fetching before it hands anything over). Every row also gives
the median time the cyclic garbage collector ran during a side's timed part
(``gc_ms_median``, from ``gc.callbacks``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _common import Report

import troupe
from troupe import Actor, ActorRef, ActorSystem
from troupe.brokers import Broker, ConsumerBridge, ConsumerStats, ProducerBridge

#: One message: a JSON object of about 100 bytes encoded.
PAYLOAD: dict[str, Any] = {"order": 12345, "sku": "SKU-" + "x" * 40, "qty": 3, "ok": True}
PAYLOAD_BYTES = len(json.dumps(PAYLOAD).encode())
#: Publishes in flight at a time, on every side (asks gathered; a raw pipeline or batch).
WINDOW = 100
#: Records a raw consumer fetches at a time (the bridges' default ``batch``).
FETCH = 100


class Sink(Actor):
    """Counts messages (decoded JSON objects); resolves ``done`` at ``total``; appends the
    time of the first one to ``first`` when given."""

    def __init__(
        self, total: int, done: asyncio.Future[None], first: list[float] | None = None
    ) -> None:
        self.total = total
        self.count = 0
        self.done = done
        self.first = first

    def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == 1 and self.first is not None:
            self.first.append(time.perf_counter())
        if self.count == self.total and not self.done.done():
            self.done.set_result(None)


class Counter:
    """The raw sides' handler: counts decoded messages; ``done`` at ``total``; ``first`` is
    when the first one came (``perf_counter``)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.first: float | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self, message: Any) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.total and not self.done.done():
            self.done.set_result(None)


@dataclass
class Timing:
    seconds: float
    cpu: float
    first: float | None = None  # seconds from the start to the first message handled
    gc: float = 0.0  # seconds the garbage collector ran meanwhile


class _CollectorClock:
    """Adds up the time the cyclic garbage collector runs (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._began = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._began


_COLLECTOR = _CollectorClock()


class Stopwatch:
    """Wall and process CPU time of a side's timed part, and the collector's share of it."""

    def __init__(self) -> None:
        self._wall = self._cpu = self._gc = 0.0

    def start(self) -> None:
        self._gc = _COLLECTOR.total
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def stop(self, first: float | None = None) -> Timing:
        """``first``: when the first message was handled (``perf_counter``), if known."""
        return Timing(
            time.perf_counter() - self._wall,
            time.process_time() - self._cpu,
            None if first is None else first - self._wall,
            _COLLECTOR.total - self._gc,
        )


async def ask_all(producer: ActorRef, n: int) -> None:
    """``n`` asks to a ProducerBridge, ``WINDOW`` in flight: each returns once confirmed."""
    ask = producer.ask
    for first in range(0, n, WINDOW):
        await asyncio.gather(*[ask(PAYLOAD) for _ in range(min(WINDOW, n - first))])


async def wait_for(condition: Callable[[], bool], poll: float = 0.0005) -> None:
    """Poll ``condition`` (a counter the bridge updates) until it holds."""
    while not condition():  # noqa: ASYNC110 - a plain counter, no event to wait on
        await asyncio.sleep(poll)


Side = Callable[[str, int, str], Awaitable[Timing]]


async def bridges_end_to_end(
    broker: Broker,
    n: int,
    stream: str,
    group: str,
    *,
    ready: Callable[[ConsumerStats], bool] = lambda stats: True,
) -> Timing:
    """The troupe side end to end: ``n`` ProducerBridge asks -> broker -> ConsumerBridge ->
    a counting actor, timed once the consumer is ``ready`` (Kafka: joined its group)."""
    await broker.ensure_group(stream, group)
    watch = Stopwatch()
    async with ActorSystem("bench") as system:
        done = asyncio.get_running_loop().create_future()
        sink = system.spawn(Sink, n, done)
        system.spawn(ConsumerBridge, broker, stream, group, sink, consumer="c")
        producer = system.spawn(ProducerBridge, broker, stream)
        stats = broker.stats.consumer(stream, group, "c")
        await wait_for(lambda: ready(stats), 0.005)
        watch.start()
        await ask_all(producer, n)
        await done
        await wait_for(lambda: stats.acked >= n)
        timing = watch.stop()
    await broker.close()
    return timing


async def bridges_consume_only(broker: Broker, n: int, stream: str, group: str) -> Timing:
    """The troupe side consume only: ``n`` messages published through a ProducerBridge
    first (not timed), then a ConsumerBridge -> a counting actor works the backlog."""
    await broker.ensure_group(stream, group)
    async with ActorSystem("fill") as system:
        await ask_all(system.spawn(ProducerBridge, broker, stream), n)
    watch = Stopwatch()
    async with ActorSystem("bench") as system:
        done = asyncio.get_running_loop().create_future()
        stats = broker.stats.consumer(stream, group, "c")
        first: list[float] = []
        watch.start()
        sink = system.spawn(Sink, n, done, first)
        system.spawn(ConsumerBridge, broker, stream, group, sink, consumer="c")
        await done
        await wait_for(lambda: stats.acked >= n)
        timing = watch.stop(first[0])
    await broker.close()
    return timing


def rounds(repeat: int, n: int, url: str, sides: dict[str, Side]) -> dict[str, list[Timing]]:
    """Each side once to warm up, then ``repeat`` rounds of every side, order rotating."""
    names = list(sides)
    for name in names:
        troupe.run(sides[name](url, min(n, 2000), f"warm-{name}-{time.time_ns()}"))
    timings: dict[str, list[Timing]] = {name: [] for name in names}
    for i in range(repeat):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            timing = troupe.run(sides[name](url, n, f"bench-{name}-{i}-{time.time_ns()}"))
            timings[name].append(timing)
    return timings


def _first_records(timings: dict[str, list[Timing]]) -> dict[str, Any]:
    """The median time to the first message handled, per side that measured it (ms)."""
    firsts = {
        name: round(statistics.median(t.first for t in runs if t.first is not None) * 1000, 1)
        for name, runs in timings.items()
        if runs and all(t.first is not None for t in runs)
    }
    return {"first_message_ms_median": firsts} if firsts else {}


def add_row(
    report: Report, row: str, n: int, timings: dict[str, list[Timing]], **extra: Any
) -> dict[str, float]:
    """Report ``row``: median rates, median per-round ratios troupe/peer, CPU per message.
    Returns the median ratio against each peer."""
    rates = {name: [n / t.seconds for t in runs] for name, runs in timings.items()}
    ours = rates.pop("troupe")
    ratios = {
        peer: statistics.median(t / p for t, p in zip(ours, theirs, strict=True))
        for peer, theirs in rates.items()
    }
    cpu = {
        name: round(statistics.median(t.cpu for t in runs) / n * 1e6, 1)
        for name, runs in timings.items()
    }
    firsts = _first_records(timings)
    collected = {
        name: round(statistics.median(t.gc for t in runs) * 1000, 1)
        for name, runs in timings.items()
    }
    report.add(
        row,
        "msg/s",
        statistics.median(ours),
        {peer: statistics.median(theirs) for peer, theirs in rates.items()},
        messages=n,
        payload_bytes=PAYLOAD_BYTES,
        median_paired_ratio={peer: round(r, 3) for peer, r in ratios.items()},
        paired_ratios={
            peer: [round(t / p, 3) for t, p in zip(ours, theirs, strict=True)]
            for peer, theirs in rates.items()
        },
        cpu_us_per_msg_median=cpu,
        gc_ms_median=collected,
        **firsts,
        **extra,
    )
    summary = ", ".join(f"{peer} {r:.2f}x" for peer, r in ratios.items())
    cpus = ", ".join(f"{name} {us}" for name, us in cpu.items())
    print(f"  {row}: troupe / peer, median of {len(ours)} rounds: {summary}; CPU us/msg: {cpus}")
    print(
        "  garbage collector (ms, median): " + ", ".join(f"{k} {v}" for k, v in collected.items())
    )
    if firsts:
        ms = ", ".join(f"{name} {v}" for name, v in firsts["first_message_ms_median"].items())
        print(f"  first message handled after (ms, median): {ms}")
    return ratios
