"""What looking costs: message throughput with the observer page polled every second vs not.

A system of 10,000 actors (100 supervisors of 100 workers each, plus a
consumer bridge on the memory broker, so every section has rows) serves
``/metrics`` and the observer beside it. A driver tells batches of messages
round robin to the workers and counts handled messages for ``--seconds``. Runs
alternate: nobody looking, then a thread fetching ``/observer.json`` (the whole
tree) every second, as the page does; the median of each is reported with the
ratio (target: at least 0.95x). The JSON also records how long one view of the
10,000-actor tree took to gather.

    python benchmarks/observer.py --quick --json benchmarks/results/observer.json
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, median, parse_args

from troupe import Actor, ActorRef, ActorSystem, Child
from troupe.brokers import ConsumerBridge, MemoryBroker
from troupe.supervisors import ChildSpec, SupervisorSpec

SUPERVISORS = 100
WORKERS = 100  # per supervisor: 10,000 actors
BATCH = 1000


class Worker(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Poller:
    """Fetches the observer view every ``every`` seconds on a thread, as the page does."""

    def __init__(self, url: str, every: float = 1.0) -> None:
        self.url = url
        self.every = every
        self.stop = threading.Event()
        self.fetches: list[float] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=30) as reply:
                json.loads(reply.read())
            self.fetches.append(time.perf_counter() - start)
            self.stop.wait(max(0.0, self.every - (time.perf_counter() - start)))

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def drive(workers: list[ActorRef], seconds: float) -> float:
    """Messages handled per second: batches told round robin, each ended by an ask."""
    handled = 0
    index = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(BATCH):
            workers[index % len(workers)].tell(index)
            index += 1
        await workers[index % len(workers)].ask("sync", timeout=60)
        handled += BATCH + 1
    return handled / (time.perf_counter() - start)


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 3.0 if args.quick else 10.0
    rounds = args.repeat or (3 if args.quick else 5)
    logging.disable(logging.WARNING)
    report = Report("observer")
    async with ActorSystem(metrics_port=0) as system:
        refs = [
            SupervisorSpec(
                [ChildSpec(Worker, name=f"w{s}-{i}") for i in range(WORKERS)], name=f"sup{s}"
            ).spawn(system)
            for s in range(SUPERVISORS)
        ]
        broker = MemoryBroker()
        sink = system.spawn(Worker, name="sink")
        system.spawn(ConsumerBridge, broker, "bench", "g", sink, name="bench-bridge")
        for ref in refs:
            await Child.of(ref).wait_started()
        live = [kid.ref for ref in refs for kid in Child.of(ref).children()]
        assert len(live) == SUPERVISORS * WORKERS, len(live)
        assert system.metrics_endpoint is not None
        url = system.metrics_endpoint.url.rsplit("/", 1)[0] + "/observer.json"
        await drive(live, 1.0)  # warm up
        idle: list[float] = []
        polled: list[float] = []
        fetches: list[float] = []
        for _ in range(rounds):
            idle.append(await drive(live, seconds))
            with Poller(url) as poller:
                polled.append(await drive(live, seconds))
            fetches.extend(poller.fetches)
        actors = len(system.cells())
    ratio = median(polled) / median(idle)
    report.add(
        f"tell, {actors} actors",
        "msg/s",
        median(polled),
        {"nobody looking": median(idle)},
        ratio=round(ratio, 3),
        target=0.95,
        idle_runs=idle,
        polled_runs=polled,
        view_seconds_median=median(fetches) if fetches else None,
        views=len(fetches),
    )
    print(f"polled/idle {ratio:.3f}x (target >= 0.95x); one view of the tree took "
          f"{median(fetches) * 1000:.0f} ms (median of {len(fetches)})")
    report.write(args.json)


if __name__ == "__main__":
    asyncio.run(main())
