"""Core actor costs, troupe and its peers side by side in one run.

Questions: one-way tell throughput (1 sender -> 1 actor; also with one middleware
hook), ask round trips,
ping-pong between two actors, memory per idle actor and after a message,
spawn rate; asks from 8 threads into a SyncActorSystem; other actors' ask
latency while a plain actor blocks the loop; shutdown of many idle actors;
a CPU-bound handler on 1 and 2 processes of a process tree.

Peers: pykka ThreadingActor, thespian's simpleSystemBase, a raw asyncio.Queue
actor (a task per actor), a raw deque+future actor (the ceiling: no
mailbox bound, no supervision, no replies beyond a future), and for ``ask``
xoscar's local-ref ask (``create_local_actor_ref``: the method runs in the
caller's task under the actor's lock; ``pip install -e '.[bench]'``, skipped
with a note when xoscar is not installed).

Every side of a row runs once to warm up, then the sides take turns, round
after round (the order rotating), and each reports the median of its rounds: a
shared machine's load changes within a run, and no side gets a cold start or a
quiet moment the others miss.
The raw actors queue all ``n`` tells unbounded, so their rate depends on how
much free memory the allocator holds (right after pykka and thespian ran in the
process, the deque ceiling is up to ~1.8x faster: hence the rotation); ``tell_cpu``
counts the loop thread's CPU time instead of wall time.

    python benchmarks/actors.py --quick --json benchmarks/results/actors.json

``--quick`` shuts down 100k idle actors; the full run a million (about 1 GiB).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, parse_args

import troupe
from troupe import Actor, ActorSystem, MailboxConfig, Middleware, SyncActorSystem, ThreadActor

# ----------------------------------------------------------------------------- troupe


class Counter(Actor):
    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        self.count += 1
        return self.count


class Ponger(Actor):
    def receive(self, message: Any) -> None:
        message.tell(self.ref)


class Pinger(Actor):
    def __init__(self, ponger: Any) -> None:
        self.ponger = ponger
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def receive(self, message: Any) -> None:
        if isinstance(message, tuple):  # ("go", n, future)
            _, self.left, self.done = message
        else:
            self.left -= 1
        if self.left > 0:
            self.ponger.tell(self.ref)
        elif self.done is not None:
            self.done.set_result(None)


async def troupe_tell(n: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds (of ``clock``) to tell ``n`` messages and get the last one handled."""
    async with ActorSystem("bench") as system:
        ref = system.spawn(Counter)
        start = clock()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return clock() - start


async def troupe_tell_metrics(n: int, metrics: bool) -> float:
    """``troupe_tell`` with the system's metrics on or off (an actor named in both)."""
    async with ActorSystem("bench", metrics=metrics) as system:
        ref = system.spawn(Counter, name="counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return time.perf_counter() - start


class CountProcessed(Middleware):
    """A middleware with one after_process hook (an audit log's cost, minus its I/O)."""

    def __init__(self) -> None:
        self.count = 0

    def after_process(self, actor: Actor, message: Any, result: Any, error: Any) -> None:
        self.count += 1


async def troupe_tell_middleware(n: int, middleware: bool) -> float:
    """``troupe_tell`` with no middleware, or one whose after_process hook counts."""
    chain = [CountProcessed()] if middleware else []
    async with ActorSystem("bench", middleware=chain) as system:
        ref = system.spawn(Counter, name="counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return time.perf_counter() - start


async def troupe_ask(n: int) -> float:
    async with ActorSystem("bench") as system:
        ref = system.spawn(Counter)
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(i)
        return time.perf_counter() - start


async def troupe_pingpong(n: int) -> float:
    async with ActorSystem("bench") as system:
        ponger = system.spawn(Ponger)
        pinger = system.spawn(Pinger, ponger)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        pinger.tell(("go", n, done))
        await done
        return time.perf_counter() - start


async def troupe_spawn(n: int) -> float:
    async with ActorSystem("bench") as system:
        start = time.perf_counter()
        for _ in range(n):
            system.spawn(Counter)
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- raw asyncio


class QueueActor:
    """The textbook asyncio actor: a task looping over an asyncio.Queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.count = 0
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while True:
            _message, reply = await self.queue.get()
            self.count += 1
            if reply is not None:
                reply.set_result(self.count)


class DequeActor:
    """The ceiling: a deque and a wake-up future; no bound, no supervision."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.wake: asyncio.Future[None] | None = None
        self.count = 0
        self.task = asyncio.ensure_future(self.run())

    def put(self, item: Any) -> None:
        self.items.append(item)
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        items = self.items
        while True:
            while items:
                _message, reply = items.popleft()
                self.count += 1
                if reply is not None:
                    reply.set_result(self.count)
            self.wake = loop.create_future()
            await self.wake


async def raw_tell(
    kind: type[Any], n: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    actor = kind()
    put = actor.queue.put_nowait if kind is QueueActor else actor.put
    start = clock()
    for i in range(n):
        put((i, None))
    done = asyncio.get_running_loop().create_future()
    put(("flush", done))
    await done
    elapsed = clock() - start
    actor.task.cancel()
    return elapsed


async def raw_ask(kind: type[Any], n: int) -> float:
    actor = kind()
    put = actor.queue.put_nowait if kind is QueueActor else actor.put
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for i in range(n):
        reply = loop.create_future()
        put((i, reply))
        await reply
    elapsed = time.perf_counter() - start
    actor.task.cancel()
    return elapsed


async def raw_pingpong(kind: type[Any], n: int) -> float:
    """Two raw actors bouncing a message: each hop goes through the other's mailbox."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    inboxes: list[Any] = []

    class Bouncer(kind):  # type: ignore[misc, valid-type]
        def __init__(self, index: int) -> None:
            self.index = index
            super().__init__()

    a, b = Bouncer(0), Bouncer(1)
    inboxes = [a, b]
    left = [n]

    async def bounce(actor: Any) -> None:
        get = actor.queue.get if kind is QueueActor else None
        while True:
            if get is not None:
                message, _ = await get()
            else:
                while not actor.items:
                    actor.wake = loop.create_future()
                    await actor.wake
                message, _ = actor.items.popleft()
            if actor.index == 0:
                left[0] -= 1
                if left[0] <= 0:
                    done.set_result(None)
                    continue
            other = inboxes[1 - actor.index]
            (other.queue.put_nowait if kind is QueueActor else other.put)((message, None))

    for actor in inboxes:
        actor.task.cancel()
    tasks = [asyncio.ensure_future(bounce(actor)) for actor in inboxes]
    start = time.perf_counter()
    (b.queue.put_nowait if kind is QueueActor else b.put)(("ping", None))
    await done
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    return elapsed


async def raw_spawn(kind: type[Any], n: int) -> float:
    start = time.perf_counter()
    actors = [kind() for _ in range(n)]
    elapsed = time.perf_counter() - start
    for actor in actors:
        actor.task.cancel()
    await asyncio.sleep(0)
    return elapsed


# ----------------------------------------------------------------------------- pykka


def pykka_classes() -> tuple[Any, Any, Any]:
    import pykka

    class PCounter(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            self.count += 1
            return self.count

    class PPonger(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            message.tell(self.actor_ref)

    class PPinger(pykka.ThreadingActor):
        def __init__(self, ponger: Any) -> None:
            super().__init__()
            self.ponger = ponger
            self.left = 0
            self.done: Any = None

        def on_receive(self, message: Any) -> None:
            if isinstance(message, tuple):
                _, self.left, self.done = message
            else:
                self.left -= 1
            if self.left > 0:
                self.ponger.tell(self.actor_ref)
            else:
                self.done.set()

    return PCounter, PPonger, PPinger


def pykka_tell(n: int) -> float:
    counter_cls, _, _ = pykka_classes()
    ref = counter_cls.start()
    start = time.perf_counter()
    for i in range(n):
        ref.tell(i)
    ref.ask("flush")
    elapsed = time.perf_counter() - start
    ref.stop()
    return elapsed


def pykka_ask(n: int) -> float:
    counter_cls, _, _ = pykka_classes()
    ref = counter_cls.start()
    start = time.perf_counter()
    for i in range(n):
        ref.ask(i)
    elapsed = time.perf_counter() - start
    ref.stop()
    return elapsed


def pykka_pingpong(n: int) -> float:
    import threading

    _, ponger_cls, pinger_cls = pykka_classes()
    ponger = ponger_cls.start()
    pinger = pinger_cls.start(ponger)
    done = threading.Event()
    start = time.perf_counter()
    pinger.tell(("go", n, done))
    done.wait()
    elapsed = time.perf_counter() - start
    pinger.stop()
    ponger.stop()
    return elapsed


def pykka_spawn(n: int) -> float:
    counter_cls, _, _ = pykka_classes()
    start = time.perf_counter()
    refs = [counter_cls.start() for _ in range(n)]
    elapsed = time.perf_counter() - start
    for ref in refs:
        ref.stop()
    return elapsed


# ----------------------------------------------------------------------------- thespian


def thespian_classes() -> tuple[Any, Any, Any]:
    from thespian.actors import Actor as TActor

    class TCounter(TActor):  # type: ignore[misc]
        count = 0

        def receiveMessage(self, message: Any, sender: Any) -> None:
            self.count += 1
            if message == "flush" or isinstance(message, tuple):
                self.send(sender, self.count)

    class TPonger(TActor):  # type: ignore[misc]
        def receiveMessage(self, message: Any, sender: Any) -> None:
            self.send(sender, "pong")

    class TPinger(TActor):  # type: ignore[misc]
        left = 0
        requester = None
        ponger = None

        def receiveMessage(self, message: Any, sender: Any) -> None:
            if isinstance(message, tuple):
                _, self.left, self.ponger = message
                self.requester = sender
            else:
                self.left -= 1
            if self.left > 0:
                self.send(self.ponger, "ping")
            else:
                self.send(self.requester, "done")

    return TCounter, TPonger, TPinger


def _thespian_system() -> Any:
    import logging

    from thespian.actors import ActorSystem as TSystem

    logging.getLogger("Thespian").setLevel(logging.CRITICAL)
    return TSystem("simpleSystemBase", logDefs={"version": 1, "disable_existing_loggers": False})


@contextmanager
def thespian_session() -> Iterator[Any]:
    """A thespian simpleSystemBase that is shut down afterwards."""
    system = _thespian_system()
    try:
        yield system
    finally:
        system.shutdown()


def thespian_tell(n: int) -> float:
    counter_cls, _, _ = thespian_classes()
    with thespian_session() as system:
        addr = system.createActor(counter_cls)
        start = time.perf_counter()
        for i in range(n):
            system.tell(addr, i)
        system.ask(addr, "flush", 60)
        return time.perf_counter() - start


def thespian_ask(n: int) -> float:
    counter_cls, _, _ = thespian_classes()
    with thespian_session() as system:
        addr = system.createActor(counter_cls)
        start = time.perf_counter()
        for i in range(n):
            system.ask(addr, (i,), 60)
        return time.perf_counter() - start


def thespian_pingpong(n: int) -> float:
    _, ponger_cls, pinger_cls = thespian_classes()
    with thespian_session() as system:
        ponger = system.createActor(ponger_cls)
        pinger = system.createActor(pinger_cls)
        start = time.perf_counter()
        system.ask(pinger, ("go", n, ponger), 120)
        return time.perf_counter() - start


def thespian_spawn(n: int) -> float:
    counter_cls, _, _ = thespian_classes()
    with thespian_session() as system:
        start = time.perf_counter()
        for _ in range(n):
            system.createActor(counter_cls)
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- xoscar


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for xoscar's actor pool)."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
        return port


async def xoscar_ask(n: int) -> float:
    """``n`` asks through xoscar's local ref: the actor lives in a pool in this process and
    the ref calls its method in the caller's task (xoscar's fastest ask path)."""
    import xoscar

    class XoscarCounter(xoscar.Actor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def incr(self) -> int:
            self.count += 1
            return self.count

    pool = await xoscar.create_actor_pool(f"127.0.0.1:{free_loopback_port()}", n_process=0)
    async with pool:
        ref = await xoscar.create_actor(XoscarCounter, address=pool.external_address, uid="c")
        local = xoscar.core.create_local_actor_ref(ref.address, ref.uid)
        assert local is not None, "xoscar gave no local ref for an actor in this process"
        start = time.perf_counter()
        for _ in range(n):
            await local.incr()
        elapsed = time.perf_counter() - start
        assert await local.incr() == n + 1
    return elapsed


# ----------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(kind: str, n: int) -> float:
    """Bytes of RSS per idle actor of ``kind`` (run in a fresh process)."""
    gc.collect()
    keep: list[Any] = []

    async def idle_asyncio(factory: Any) -> float:
        gc.collect()
        before = rss_bytes()
        for _ in range(n):
            keep.append(factory())
        await asyncio.sleep(0.05)
        gc.collect()
        return (rss_bytes() - before) / n

    if kind == "troupe":

        async def main() -> float:
            async with ActorSystem("mem") as system:
                return await idle_asyncio(lambda: system.spawn(Counter))

        return troupe.run(main())
    if kind in ("asyncio_queue", "deque_future"):
        cls = QueueActor if kind == "asyncio_queue" else DequeActor
        return troupe.run(idle_asyncio(cls))
    if kind == "pykka":
        counter_cls, _, _ = pykka_classes()
        before = rss_bytes()
        refs = [counter_cls.start() for _ in range(n)]
        time.sleep(0.2)
        per_actor = (rss_bytes() - before) / n
        for ref in refs:
            ref.stop()
        return per_actor
    if kind == "thespian":
        counter_cls, _, _ = thespian_classes()
        system = _thespian_system()
        before = rss_bytes()
        addresses = [system.createActor(counter_cls) for _ in range(n)]
        per_actor = (rss_bytes() - before) / n
        del addresses
        system.shutdown()
        return per_actor
    raise ValueError(kind)


# ----------------------------------------------------------------------------- after a message


def memory_after_message(kind: str, n: int) -> tuple[float, float]:
    """Bytes of RSS per actor of ``kind``: idle, then idle again after one message each
    (sent to 1,000 actors at a time, as traffic reaches actors over time; run in a
    fresh process)."""
    gc.collect()
    keep: list[Any] = []

    async def main() -> tuple[float, float]:
        before = rss_bytes()
        if kind == "troupe":
            async with ActorSystem("mem") as system:
                keep.extend(system.spawn(Counter) for _ in range(n))
                await asyncio.sleep(0.05)
                gc.collect()
                idle = rss_bytes()
                for at in range(0, n, 1000):
                    for ref in keep[at : at + 1000]:
                        ref.tell(1)
                    await system.wait_idle(10)
                gc.collect()
                return (idle - before) / n, (rss_bytes() - before) / n
        cls = QueueActor if kind == "asyncio_queue" else DequeActor
        keep.extend(cls() for _ in range(n))
        await asyncio.sleep(0.05)
        gc.collect()
        idle = rss_bytes()
        for at in range(0, n, 1000):
            for actor in keep[at : at + 1000]:
                (actor.queue.put_nowait if kind == "asyncio_queue" else actor.put)((1, None))
            for _ in range(3):
                await asyncio.sleep(0)
        gc.collect()
        return (idle - before) / n, (rss_bytes() - before) / n

    return troupe.run(main())


# ----------------------------------------------------------------------------- asks from threads


def run_threads(threads: int, per_thread: int, ask: Callable[[int], Any]) -> float:
    """Seconds for ``threads`` threads to make ``per_thread`` blocking asks each."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for i in range(per_thread):
            ask(i)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def troupe_sync_asks(threads: int, per_thread: int) -> float:
    with SyncActorSystem("bench") as system:
        ref = system.spawn(Counter)
        return run_threads(threads, per_thread, lambda m: system.ask(ref, m))


def pykka_sync_asks(threads: int, per_thread: int) -> float:
    counter_cls, _, _ = pykka_classes()
    ref = counter_cls.start()
    try:
        return run_threads(threads, per_thread, ref.ask)
    finally:
        ref.stop()


# ----------------------------------------------------------------------------- a blocked loop


class Blocker(Actor):
    """A plain actor whose sync handler blocks (what ThreadActor is for)."""

    def receive(self, seconds: float) -> None:
        time.sleep(seconds)


class ThreadBlocker(ThreadActor):
    def receive(self, seconds: float) -> None:
        time.sleep(seconds)


async def blocked_ask_latency(kind: str, block: float = 0.2, queued: int = 10) -> list[float]:
    """Seconds each ask to another actor took while ``queued`` messages that block for
    ``block`` seconds each are handled (asks one after another until they are done)."""
    if kind == "asyncio_queue":
        return await _raw_blocked_latency(block, queued)
    deadline: dict[str, Any] = {"throughput_deadline": None} if kind == "no_time_budget" else {}
    async with ActorSystem("blocked", slow_handler_warning=None, **deadline) as system:
        blocker = system.spawn(ThreadBlocker if kind == "thread_actor" else Blocker)
        counter = system.spawn(Counter)
        await counter.ask(0)
        for _ in range(queued):
            blocker.tell(block)
        done = blocker.ask(0.0, timeout=None)
        latencies = []
        while not done.done():
            start = time.perf_counter()
            await counter.ask(1, timeout=None)
            latencies.append(time.perf_counter() - start)
        await done
        return latencies


async def _raw_blocked_latency(block: float, queued: int) -> list[float]:
    """The textbook asyncio actor (a task per actor) with the same blocking handler."""
    loop = asyncio.get_running_loop()
    blocker: asyncio.Queue[Any] = asyncio.Queue()
    counter: asyncio.Queue[Any] = asyncio.Queue()

    async def run(queue: asyncio.Queue[Any], handle: Callable[[Any], Any]) -> None:
        while True:
            message, reply = await queue.get()
            result = handle(message)
            if reply is not None:
                reply.set_result(result)

    tasks = [
        asyncio.ensure_future(run(blocker, time.sleep)),
        asyncio.ensure_future(run(counter, lambda m: m)),
    ]
    for _ in range(queued):
        blocker.put_nowait((block, None))
    done = loop.create_future()
    blocker.put_nowait((0.0, done))
    latencies = []
    while not done.done():
        start = time.perf_counter()
        reply = loop.create_future()
        counter.put_nowait((1, reply))
        await reply
        latencies.append(time.perf_counter() - start)
    for task in tasks:
        task.cancel()
    return latencies


# ----------------------------------------------------------------------------- shutdown


class IdleWithStop(Actor):
    """An idle actor with a plain on_stop (it counts the hooks that ran)."""

    stopped = 0

    def receive(self, message: Any) -> None:
        pass

    def on_stop(self) -> None:
        IdleWithStop.stopped += 1


def shutdown_probe(kind: str, n: int) -> dict[str, float]:
    """Spawn ``n`` idle actors, shut down; seconds, on_stop count, RSS (fresh process)."""
    gc.collect()
    base = rss_bytes()

    async def main() -> dict[str, float]:
        if kind == "asyncio_queue":  # cancel n actor tasks and wait for them
            actors = [QueueActor() for _ in range(n)]
            await asyncio.sleep(0)
            peak = rss_bytes()
            start = time.perf_counter()
            for actor in actors:
                actor.task.cancel()
            await asyncio.gather(*(a.task for a in actors), return_exceptions=True)
            return {"seconds": time.perf_counter() - start, "peak_mib": (peak - base) / 2**20}
        system = ActorSystem("shutdown")
        async with system:
            for _ in range(n):
                system.spawn(IdleWithStop)
            peak = rss_bytes()
            start = time.perf_counter()
            report = await system.shutdown()
            seconds = time.perf_counter() - start
        del system
        gc.collect()
        return {
            "seconds": seconds,
            "on_stop": IdleWithStop.stopped,
            "stopped": report.stopped,
            "killed": report.killed,
            "peak_mib": (peak - base) / 2**20,
            "after_mib": (rss_bytes() - base) / 2**20,
        }

    return troupe.run(main())


# ----------------------------------------------------------------------------- process trees


class CpuWorker(Actor):
    """A process tree's root actor: handles TROUPE_BENCH_MESSAGES CPU-bound messages,
    writes (start, end, count) to a file in TROUPE_BENCH_RESULTS, and stops."""

    mailbox = MailboxConfig(capacity=50_000)

    def on_start(self) -> None:
        self.left = int(os.environ["TROUPE_BENCH_MESSAGES"])
        self.count = self.left
        self.started = time.time()
        for _ in range(self.left):
            self.ref.tell(3000)

    def receive(self, size: int) -> None:
        sum(i * i for i in range(size))  # the CPU-bound handler
        self.left -= 1
        if self.left == 0:
            path = Path(os.environ["TROUPE_BENCH_RESULTS"]) / f"{os.getpid()}.json"
            path.write_text(json.dumps([self.started, time.time(), self.count]))
            self.ref.stop()


def process_tree_rate(processes: int, messages: int) -> float:
    """Messages/s of CpuWorker summed over a tree of ``processes`` processes, from the
    first start to the last end of the handling (interpreter start-up not counted)."""
    from troupe.supervisors import ProcessSpec, ProcessSupervisor

    with tempfile.TemporaryDirectory() as results:
        env = {
            "PYTHONPATH": str(Path(__file__).resolve().parent),
            "TROUPE_BENCH_MESSAGES": str(messages),
            "TROUPE_BENCH_RESULTS": results,
        }
        spec = ProcessSpec("actors:CpuWorker", count=processes, restart="transient", env=env)
        tree = ProcessSupervisor([spec], name="bench", log_level="WARNING")
        code = troupe.run(tree.run())
        if code != 0:
            raise RuntimeError(f"the process tree ended with status {code}")
        rows = [json.loads(p.read_text()) for p in Path(results).glob("*.json")]
    assert len(rows) == processes
    return sum(r[2] for r in rows) / (max(r[1] for r in rows) - min(r[0] for r in rows))


# ----------------------------------------------------------------------------- main


def interleaved(repeat: int, **measures: Callable[[], float]) -> dict[str, float]:
    """Median rate of each side: one warm-up round, then ``repeat`` rounds in which every
    side runs in turn, the order rotating from round to round as in ``_brokers_common.rounds``
    (no side always runs right after the same one: a peer that leaves the allocator holding
    free memory speeds up whichever side follows it). Peers not installed are skipped."""
    sides = {name: fn for name, fn in measures.items() if peer_of(name) not in MISSING}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for round_ in range(repeat + 1):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            rate = sides[name]()
            if round_:  # round 0 warms every side up
                rates[name].append(rate)
    return {name: statistics.median(values) for name, values in rates.items()}


def peer_of(side: str) -> str:
    """The package a side measures: ``xoscar_local_ref`` -> ``xoscar``."""
    return side.split("_", 1)[0]


def rate_of(count: int, fn: Any, *args: Any) -> Callable[[], float]:
    """A measure: ``count`` operations per second of one run of ``fn(*args)``."""

    def measure() -> float:
        result = fn(*args)
        seconds = troupe.run(result) if asyncio.iscoroutine(result) else result
        return count / seconds

    return measure


def run_probe(*args: str) -> Any:
    """Run this script's probe ``args`` in a fresh process; its last output line as JSON."""
    out = subprocess.run(
        [sys.executable, __file__, "--probe", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def probe(args: list[str]) -> Any:
    """What ``--probe KIND ...`` prints (run in a fresh process by run_probe)."""
    what, kind, n = args[0], args[1], int(args[2])
    if what == "memory":
        return memory_probe(kind, n)
    if what == "memory_after_message":
        return memory_after_message(kind, n)
    if what == "shutdown":
        return shutdown_probe(kind, n)
    raise ValueError(what)


def missing_peers() -> set[str]:
    """Peers that are not installed (thespian comes with ``pip install -e '.[dev]'``,
    xoscar with ``'.[bench]'``)."""
    missing = set()
    for name in ("thespian", "xoscar"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.add(name)
    return missing


MISSING = missing_peers()


#: Row names for ``--only`` (``shutdown_idle`` is shutdown_1m_idle, or _100k_ with --quick).
ROWS = (
    "tell",
    "tell_cpu",
    "tell_metrics_on_vs_off",
    "tell_middleware_off_vs_on",
    "ask",
    "ping_pong",
    "spawn",
    "sync_ask_8_threads",
    "memory_per_idle_actor",
    "memory_after_message",
    "loop_blocked_latency",
    "shutdown_idle",
    "process_tree_2_vs_1",
)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], ROWS)
    want = args.want
    quick = args.quick
    repeat = args.repeat or (3 if quick else 5)
    n_tell = 100_000 if quick else 500_000
    n_ask = 20_000 if quick else 100_000
    n_pykka = 20_000 if quick else 50_000
    n_spawn = 20_000 if quick else 100_000
    report = Report("actors")
    loop_name = "uvloop" if troupe.loop.uvloop_available() else "asyncio"
    print(f"event loop: {loop_name}; a warm-up round, then {repeat} interleaved rounds, medians")
    for name in sorted(MISSING):
        extra = "bench" if name == "xoscar" else "dev"
        print(f"note: {name} is not installed (pip install -e '.[{extra}]'); its column is skipped")

    def add(name: str, unit: str, rates: dict[str, float], **extra: Any) -> None:
        report.add(name, unit, rates.pop("troupe"), rates, **extra)

    if want("tell"):
        add(
            "tell",
            "msg/s",
            interleaved(
                repeat,
                troupe=rate_of(n_tell, troupe_tell, n_tell),
                pykka=rate_of(n_pykka, pykka_tell, n_pykka),
                thespian=rate_of(n_pykka, thespian_tell, n_pykka),
                asyncio_queue=rate_of(n_tell, raw_tell, QueueActor, n_tell),
                deque_future=rate_of(n_tell, raw_tell, DequeActor, n_tell),
            ),
        )
    if want("tell_cpu"):
        cpu = time.thread_time  # the loop's thread: other processes' load does not count
        add(
            "tell_cpu",
            "msg/cpu-s",
            interleaved(
                repeat,
                troupe=rate_of(n_tell, troupe_tell, n_tell, cpu),
                asyncio_queue=rate_of(n_tell, raw_tell, QueueActor, n_tell, cpu),
                deque_future=rate_of(n_tell, raw_tell, DequeActor, n_tell, cpu),
            ),
            measure="messages per second of the loop thread's CPU time (same run, interleaved)",
        )
    if want("tell_metrics_on_vs_off"):
        on_off = interleaved(
            repeat,
            troupe=rate_of(n_tell, troupe_tell_metrics, n_tell, True),
            troupe_metrics_off=rate_of(n_tell, troupe_tell_metrics, n_tell, False),
        )
        add("tell_metrics_on_vs_off", "msg/s", on_off)
    if want("tell_middleware_off_vs_on"):
        off_on = interleaved(
            repeat,
            troupe=rate_of(n_tell, troupe_tell_middleware, n_tell, False),
            troupe_after_process_hook=rate_of(n_tell, troupe_tell_middleware, n_tell, True),
        )
        add("tell_middleware_off_vs_on", "msg/s", off_on)
    n_pykka_ask = n_pykka // 4
    if want("ask"):
        add(
            "ask",
            "req/s",
            interleaved(
                repeat,
                troupe=rate_of(n_ask, troupe_ask, n_ask),
                pykka=rate_of(n_pykka_ask, pykka_ask, n_pykka_ask),
                thespian=rate_of(n_pykka_ask, thespian_ask, n_pykka_ask),
                xoscar_local_ref=rate_of(n_ask, xoscar_ask, n_ask),
                asyncio_queue=rate_of(n_ask, raw_ask, QueueActor, n_ask),
                deque_future=rate_of(n_ask, raw_ask, DequeActor, n_ask),
            ),
        )
    if want("ping_pong"):
        add(
            "ping_pong",
            "round trips/s",
            interleaved(
                repeat,
                troupe=rate_of(n_ask, troupe_pingpong, n_ask),
                pykka=rate_of(n_pykka_ask, pykka_pingpong, n_pykka_ask),
                thespian=rate_of(n_pykka_ask, thespian_pingpong, n_pykka_ask),
                asyncio_queue=rate_of(n_ask, raw_pingpong, QueueActor, n_ask),
                deque_future=rate_of(n_ask, raw_pingpong, DequeActor, n_ask),
            ),
        )
    if want("spawn"):
        n_pykka_spawn = 500 if quick else 2000
        add(
            "spawn",
            "actors/s",
            interleaved(
                repeat,
                troupe=rate_of(n_spawn, troupe_spawn, n_spawn),
                pykka=rate_of(n_pykka_spawn, pykka_spawn, n_pykka_spawn),
                thespian=rate_of(n_spawn // 10, thespian_spawn, n_spawn // 10),
                asyncio_queue=rate_of(n_spawn, raw_spawn, QueueActor, n_spawn),
                deque_future=rate_of(n_spawn, raw_spawn, DequeActor, n_spawn),
            ),
        )
    if want("sync_ask_8_threads"):
        per_thread = 1000 if quick else 2000
        add(
            "sync_ask_8_threads",
            "req/s",
            interleaved(
                repeat,
                troupe=rate_of(8 * per_thread, troupe_sync_asks, 8, per_thread),
                pykka=rate_of(8 * per_thread, pykka_sync_asks, 8, per_thread),
            ),
            threads=8,
        )
    n_memory = 100_000
    if want("memory_per_idle_actor"):
        memory = {
            "troupe": run_probe("memory", "troupe", str(n_memory)),
            "pykka": run_probe("memory", "pykka", "1000"),
            "asyncio_queue": run_probe("memory", "asyncio_queue", str(n_memory)),
            "deque_future": run_probe("memory", "deque_future", str(n_memory)),
        }
        if "thespian" not in MISSING:
            memory["thespian"] = run_probe("memory", "thespian", "10000")
        add("memory_per_idle_actor", "bytes", memory, actors=n_memory)
    if want("memory_after_message"):
        after = {
            kind: run_probe("memory_after_message", kind, str(n_memory))
            for kind in ("troupe", "asyncio_queue", "deque_future")
        }
        add(
            "memory_after_message",
            "bytes",
            {kind: values[1] for kind, values in after.items()},
            idle_before=after["troupe"][0],
            actors=n_memory,
        )
    if want("loop_blocked_latency"):
        latencies = {
            side: troupe.run(blocked_ask_latency(kind))
            for side, kind in (
                ("troupe", "troupe"),
                ("troupe_no_time_budget", "no_time_budget"),
                ("troupe_thread_actor", "thread_actor"),
                ("asyncio_queue", "asyncio_queue"),
            )
        }
        add(
            "loop_blocked_latency",
            "ms",
            {side: 1000 * max(values) for side, values in latencies.items()},
            measure="slowest ask to another actor while 10 messages block 0.2 s each",
            median_ms=1000 * statistics.median(latencies["troupe"]),
            asks=len(latencies["troupe"]),
        )
    if want("shutdown_idle"):
        n_stop = 100_000 if quick else 1_000_000
        n_stop_peer = min(n_stop, 200_000)  # a task per actor: 1M of them take ~5 GiB
        stopped = run_probe("shutdown", "troupe", str(n_stop))
        peer = run_probe("shutdown", "asyncio_queue", str(n_stop_peer))
        add(
            f"shutdown_{'100k' if quick else '1m'}_idle",
            "s",
            {
                "troupe": stopped.pop("seconds"),
                f"asyncio_queue_{n_stop_peer // 1000}k": peer["seconds"],
            },
            actors=n_stop,
            **stopped,
        )
    if want("process_tree_2_vs_1"):
        messages = 5000 if quick else 20_000
        scaling = interleaved(
            1 if quick else 2,
            troupe=lambda: process_tree_rate(2, messages),
            troupe_1_process=lambda: process_tree_rate(1, messages),
        )
        add("process_tree_2_vs_1", "msg/s", scaling, messages_per_process=messages)
    report.write(args.json)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        print(json.dumps(probe(sys.argv[2:])))
    else:
        main()
