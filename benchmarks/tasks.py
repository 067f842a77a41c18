"""Task throughput: no-op tasks through troupe's worker pool vs a stock dramatiq Worker.

Question: how many no-op tasks per second do troupe's supervised workers run
from a dramatiq broker, compared with dramatiq's own ``Worker`` with the same
broker object (dramatiq's default middleware on it), the same number of
threads and the same messages, in the same run? Measured on the StubBroker
(in memory: the runtimes' own overhead) and on Redis (a redis-server this
script starts). Each run pre-fills the queue with N messages (outside the
timing), then times from starting the workers until the last task ran. Runs
alternate troupe / dramatiq; best rates and the median of per-pair ratios are
reported. Target: troupe >= 1.5x dramatiq on Redis at matched prefetch (the
"prefetch 2xN" row: troupe with dramatiq's prefetch and threads). troupe's pool
prefetches 8 messages per thread by default (dramatiq's Worker 2): dramatiq's
Redis consumer sleeps whenever its prefetch is taken, which starves fast
workers; the second Redis row runs troupe with dramatiq's prefetch.

    python benchmarks/tasks.py --quick --json benchmarks/results/tasks.json
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dramatiq
from _common import Report, parse_args
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from troupe import ActorSystem
from troupe.brokers.servers import RedisServer
from troupe.brokers.tasks import TaskRegistry, WorkerPool

THREADS = 8
QUEUE = "bench"


class Countdown:
    """Counts task runs; ``done`` is set at ``total``."""

    def __init__(self) -> None:
        self.total = 0
        self.counter = itertools.count(1)
        self.done = threading.Event()

    def reset(self, total: int) -> None:
        self.total = total
        self.counter = itertools.count(1)
        self.done.clear()

    def hit(self) -> None:
        if next(self.counter) == self.total:
            self.done.set()


def fill(broker: dramatiq.Broker, n: int) -> None:
    """Put ``n`` no-op messages on the queue (not timed)."""
    if isinstance(broker, RedisBroker):
        for start in range(0, n, 1000):
            pipe = broker.client.pipeline(transaction=False)
            for _ in range(start, min(n, start + 1000)):
                message = Message(QUEUE, "noop", (), {}, {})
                redis_id = str(message.message_id)
                data = message.copy(options={"redis_message_id": redis_id}).encode()
                pipe.hset(f"{broker.namespace}:{QUEUE}.msgs", redis_id, data)
                pipe.rpush(f"{broker.namespace}:{QUEUE}", redis_id)
            pipe.execute()
        return
    for _ in range(n):
        broker.enqueue(Message(QUEUE, "noop", (), {}, {}))


def run_dramatiq(broker: dramatiq.Broker, countdown: Countdown, n: int) -> float:
    fill(broker, n)
    countdown.reset(n)
    worker = dramatiq.Worker(broker, queues={QUEUE}, worker_threads=THREADS, worker_timeout=100)
    start = time.perf_counter()
    worker.start()
    countdown.done.wait(300)
    elapsed = time.perf_counter() - start
    worker.stop()
    return n / elapsed


def run_troupe(
    broker: dramatiq.Broker,
    registry: TaskRegistry,
    countdown: Countdown,
    n: int,
    prefetch: int | None,
) -> float:
    fill(broker, n)
    countdown.reset(n)

    async def main() -> float:
        async with ActorSystem() as system:
            pool = WorkerPool(
                broker, registry, queues=[QUEUE], concurrency=THREADS, prefetch=prefetch
            )
            start = time.perf_counter()
            await pool.start(system)
            await asyncio.to_thread(countdown.done.wait, 300)
            elapsed = time.perf_counter() - start
            await pool.stop()
        return n / elapsed

    return asyncio.run(main())


def compare(
    name: str,
    broker: dramatiq.Broker,
    n: int,
    repeat: int,
    report: Report,
    prefetch: int | None = None,
) -> None:
    countdown = Countdown()
    broker.actors.pop("noop", None)  # declared again below, counting into this countdown

    @dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name="noop")
    def noop() -> None:
        countdown.hit()

    registry = TaskRegistry()
    registry.task(name="noop", queue=QUEUE)(countdown.hit)
    ours: list[float] = []
    theirs: list[float] = []
    runs: list[Callable[[], None]] = [
        lambda: ours.append(run_troupe(broker, registry, countdown, n, prefetch)),
        lambda: theirs.append(run_dramatiq(broker, countdown, n)),
    ]
    for _ in range(repeat):
        for run in runs:
            run()
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    report.add(
        name,
        "tasks/s",
        max(ours),
        {"dramatiq": max(theirs)},
        tasks=n,
        threads=THREADS,
        troupe_prefetch=prefetch or "default (8 x threads)",
        dramatiq_prefetch=2 * THREADS,
        troupe_runs=ours,
        dramatiq_runs=theirs,
        median_ratio=statistics.median(ratios),
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("dramatiq").setLevel(logging.ERROR)
    repeat = args.repeat or (3 if args.quick else 5)
    report = Report("tasks")
    compare(
        "no-op tasks, StubBroker", StubBroker(), 5_000 if args.quick else 50_000, repeat, report
    )
    with RedisServer() as server:
        server.start()
        broker = RedisBroker(url=server.url)  # type: ignore[no-untyped-call]
        n = 5_000 if args.quick else 30_000
        compare("no-op tasks, Redis", broker, n, repeat, report)
        # troupe with dramatiq's own prefetch (2 x threads), for a like-for-like reading
        compare("no-op, Redis, prefetch 2xN", broker, n, repeat, report, prefetch=2 * THREADS)
        broker.close()
    report.write(args.json)


if __name__ == "__main__":
    main()
