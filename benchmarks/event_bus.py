"""Event bus, idempotency and saga costs, troupe and its peers side by side in one run.

Questions: how many deliveries per second does a fan-out to 10 subscriber
actors sustain (fire-and-forget, and waiting for every handler)? What does an
idempotent effect cost over the memory store? How many 3-step sagas per
second does the orchestrator run with its log written before and after each
step?

Peers: pykka (``ActorRegistry.broadcast`` to ThreadingActors; ``ask`` futures
for the wait case), a hand-written asyncio pub/sub (a queue and task per
subscriber), a racy dict check-then-set (the floor for idempotency, without
its guarantee), and the same 3 steps as plain awaited calls with a JSON log
write before and after each (the floor for a saga: no actors, retries,
timeouts or compensation).

    python benchmarks/event_bus.py --quick --json benchmarks/results/event_bus.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, parse_args

import troupe
from troupe import Actor, ActorSystem
from troupe.actors import (
    EventBus,
    Idempotent,
    MemorySagaLog,
    SagaDefinition,
    SagaFinished,
    SagaOrchestrator,
    SagaStep,
    StartSaga,
    Step,
)
from troupe.brokers.idempotency import MemoryIdempotencyStore

SUBSCRIBERS = 10


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    order_id: int


class Sink(Actor):
    def __init__(self, counter: list[int], total: int, done: asyncio.Event) -> None:
        self.counter = counter
        self.total = total
        self.done = done

    def receive(self, event: Any) -> None:
        self.counter[0] += 1
        if self.counter[0] == self.total:
            self.done.set()


async def troupe_fanout(events: int, wait: bool) -> float:
    async with ActorSystem() as system:
        bus = EventBus(system)
        counter = [0]
        done = asyncio.Event()
        total = events * SUBSCRIBERS
        for _ in range(SUBSCRIBERS):
            bus.subscribe(system.spawn(Sink, counter, total, done), OrderPlaced)
        start = time.perf_counter()
        for n in range(events):
            await bus.publish(OrderPlaced(n), wait=wait)
        await done.wait()
        return time.perf_counter() - start


async def asyncio_fanout(events: int, wait: bool) -> float:
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue(1000) for _ in range(SUBSCRIBERS)]
    counter = [0]
    total = events * SUBSCRIBERS
    done = asyncio.Event()

    async def consume(queue: asyncio.Queue[Any]) -> None:
        while True:
            _item, reply = await queue.get()
            counter[0] += 1
            if reply is not None:
                reply.set_result(None)
            if counter[0] == total:
                done.set()

    tasks = [asyncio.create_task(consume(q)) for q in queues]
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for n in range(events):
        if wait:
            replies = [loop.create_future() for _ in queues]
            for queue, reply in zip(queues, replies, strict=True):
                await queue.put((n, reply))
            await asyncio.gather(*replies)
        else:
            for queue in queues:
                await queue.put((n, None))
    await done.wait()
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed


def pykka_fanout(events: int, wait: bool) -> float:
    import pykka

    total = events * SUBSCRIBERS
    lock = threading.Lock()
    counter = [0]
    done = threading.Event()

    class PSink(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            with lock:
                counter[0] += 1
                if counter[0] == total:
                    done.set()

    refs = [PSink.start() for _ in range(SUBSCRIBERS)]
    start = time.perf_counter()
    for n in range(events):
        if wait:
            pykka.get_all([ref.ask(n, block=False) for ref in refs])
        else:
            pykka.ActorRegistry.broadcast(n, target_class=PSink)
    done.wait()
    elapsed = time.perf_counter() - start
    for ref in refs:
        ref.stop()
    return elapsed


async def troupe_idempotent(n: int) -> float:
    guard = Idempotent(MemoryIdempotencyStore())

    async def effect() -> int:
        return 1

    start = time.perf_counter()
    for i in range(n):
        await guard.run(str(i % (n // 2)), effect)  # half the calls are duplicates
    return time.perf_counter() - start


async def racy_dict(n: int) -> float:
    seen: dict[str, int] = {}

    async def effect() -> int:
        return 1

    start = time.perf_counter()
    for i in range(n):
        key = str(i % (n // 2))
        if key not in seen:
            seen[key] = await effect()
    return time.perf_counter() - start


class BenchStep(SagaStep):
    def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return {}


class Finished(Actor):
    def __init__(self, total: int, done: asyncio.Event) -> None:
        self.left = total
        self.done = done

    def receive(self, message: SagaFinished) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def troupe_sagas(n: int) -> float:
    async with ActorSystem() as system:
        for name in ("a", "b", "c"):
            system.spawn(BenchStep, name=name)
        definition = SagaDefinition("bench", tuple(Step(s, s) for s in ("a", "b", "c")))
        done = asyncio.Event()
        orchestrator = system.spawn(
            SagaOrchestrator,
            definition,
            MemorySagaLog(),
            listener=system.spawn(Finished, n, done),
        )
        start = time.perf_counter()
        for i in range(n):
            await orchestrator.tell(StartSaga(str(i), {}))
        await done.wait()
        return time.perf_counter() - start


async def direct_sagas(n: int) -> float:
    log: dict[str, str] = {}

    async def step(data: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def saga(saga_id: str) -> None:
        for index in range(3):  # the same JSON log write before and after each step
            log[saga_id] = json.dumps({"id": saga_id, "step": index, "started": True})
            await step({})
            log[saga_id] = json.dumps({"id": saga_id, "step": index + 1, "started": False})

    start = time.perf_counter()
    await asyncio.gather(*(saga(str(i)) for i in range(n)))
    return time.perf_counter() - start


def best(repeat: int, fn: Any, *args: Any) -> float:
    """Best (shortest) seconds of ``repeat`` runs; ``fn`` may be a coroutine function."""
    times = []
    for _ in range(repeat):
        if asyncio.iscoroutinefunction(fn):
            times.append(troupe.run(fn(*args)))
        else:
            times.append(fn(*args))
    return min(times)


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    quick = args.quick
    repeat = args.repeat or (2 if quick else 5)
    report = Report("event_bus")
    events = 5_000 if quick else 20_000
    waited = 2_000 if quick else 10_000
    deliveries = events * SUBSCRIBERS
    report.add(
        "bus_fanout_10_tell",
        "deliveries/s",
        deliveries / best(repeat, troupe_fanout, events, False),
        {
            "pykka_broadcast": deliveries / best(repeat, pykka_fanout, events, False),
            "asyncio_queues": deliveries / best(repeat, asyncio_fanout, events, False),
        },
        subscribers=SUBSCRIBERS,
    )
    report.add(
        "bus_fanout_10_wait",
        "events/s",
        waited / best(repeat, troupe_fanout, waited, True),
        {
            "pykka_ask_all": waited / best(repeat, pykka_fanout, waited, True),
            "asyncio_queues": waited / best(repeat, asyncio_fanout, waited, True),
        },
        subscribers=SUBSCRIBERS,
    )
    calls = 50_000 if quick else 200_000
    report.add(
        "idempotent_effect_half_duplicates",
        "calls/s",
        calls / best(repeat, troupe_idempotent, calls),
        {"racy_dict_check_then_set": calls / best(repeat, racy_dict, calls)},
    )
    sagas = 2_000 if quick else 10_000
    report.add(
        "saga_3_steps_memory_log",
        "sagas/s",
        sagas / best(repeat, troupe_sagas, sagas),
        {"plain_awaits_no_actors": sagas / best(repeat, direct_sagas, sagas)},
    )
    report.write(args.json)


if __name__ == "__main__":
    main()
