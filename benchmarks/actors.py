"""Core actor costs, troupe and its peers side by side in one run.

Questions: one-way tell throughput (1 sender -> 1 actor), ask round trips,
ping-pong between two actors, memory per idle actor, spawn rate.

Peers: pykka ThreadingActor, thespian's simpleSystemBase, a raw asyncio.Queue
actor (a task per actor), and a raw deque+future actor (the ceiling: no
mailbox bound, no supervision, no replies beyond a future).

    python benchmarks/actors.py --quick --json benchmarks/results/actors.json
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, parse_args

import troupe
from troupe import Actor, ActorSystem

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


async def troupe_tell(n: int) -> float:
    async with ActorSystem("bench") as system:
        ref = system.spawn(Counter)
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return time.perf_counter() - start


async def troupe_tell_metrics(n: int, metrics: bool) -> float:
    """``troupe_tell`` with the system's metrics on or off (an actor named in both)."""
    async with ActorSystem("bench", metrics=metrics) as system:
        ref = system.spawn(Counter, name="counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return time.perf_counter() - start


def metrics_on_off(repeat: int, n: int) -> tuple[float, float]:
    """Best tell rates (on, off), runs alternating so both see the same machine load."""
    on: list[float] = []
    off: list[float] = []
    for _ in range(repeat + 2):
        off.append(troupe.run(troupe_tell_metrics(n, False)))
        on.append(troupe.run(troupe_tell_metrics(n, True)))
    return n / min(on), n / min(off)


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


async def raw_tell(kind: type[Any], n: int) -> float:
    actor = kind()
    put = actor.queue.put_nowait if kind is QueueActor else actor.put
    start = time.perf_counter()
    for i in range(n):
        put((i, None))
    done = asyncio.get_running_loop().create_future()
    put(("flush", done))
    await done
    elapsed = time.perf_counter() - start
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


def measure_memory(kind: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--probe-memory", kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main


def best_of(repeat: int, fn: Any, *args: Any) -> float:
    """Fastest of ``repeat`` runs (seconds)."""
    times = []
    for _ in range(repeat):
        result = fn(*args)
        times.append(troupe.run(result) if asyncio.iscoroutine(result) else result)
    return min(times)


def missing_peers() -> set[str]:
    """Peers that are not installed (thespian comes with ``pip install -e '.[dev]'``)."""
    missing = set()
    for name in ("thespian",):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.add(name)
    return missing


MISSING = missing_peers()


def peers(**measures: Any) -> dict[str, float]:
    """Run each peer's measurement, skipping the peers that are not installed."""
    return {name: measure() for name, measure in measures.items() if name not in MISSING}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    repeat = args.repeat or (3 if quick else 5)
    n_tell = 100_000 if quick else 500_000
    n_ask = 20_000 if quick else 100_000
    n_pykka = 20_000 if quick else 50_000
    n_spawn = 20_000 if quick else 100_000
    report = Report("actors")
    loop_name = "uvloop" if troupe.loop.uvloop_available() else "asyncio"
    print(f"event loop: {loop_name}; repeat {repeat}, best run kept")
    for name in sorted(MISSING):
        print(f"note: {name} is not installed (pip install -e '.[dev]'); its column is skipped")

    def rate(count: int, fn: Any, *fn_args: Any) -> float:
        return count / best_of(repeat, fn, *fn_args)

    report.add(
        "tell",
        "msg/s",
        rate(n_tell, troupe_tell, n_tell),
        peers(
            pykka=lambda: rate(n_pykka, pykka_tell, n_pykka),
            thespian=lambda: rate(n_pykka, thespian_tell, n_pykka),
            asyncio_queue=lambda: rate(n_tell, raw_tell, QueueActor, n_tell),
            deque_future=lambda: rate(n_tell, raw_tell, DequeActor, n_tell),
        ),
    )
    metrics_on, metrics_off = metrics_on_off(repeat, n_tell)
    report.add("tell_metrics_on_vs_off", "msg/s", metrics_on, {"troupe_metrics_off": metrics_off})
    n_pykka_ask = n_pykka // 4
    report.add(
        "ask",
        "req/s",
        rate(n_ask, troupe_ask, n_ask),
        peers(
            pykka=lambda: rate(n_pykka_ask, pykka_ask, n_pykka_ask),
            thespian=lambda: rate(n_pykka_ask, thespian_ask, n_pykka_ask),
            asyncio_queue=lambda: rate(n_ask, raw_ask, QueueActor, n_ask),
            deque_future=lambda: rate(n_ask, raw_ask, DequeActor, n_ask),
        ),
    )
    report.add(
        "ping_pong",
        "round trips/s",
        rate(n_ask, troupe_pingpong, n_ask),
        peers(
            pykka=lambda: rate(n_pykka_ask, pykka_pingpong, n_pykka_ask),
            thespian=lambda: rate(n_pykka_ask, thespian_pingpong, n_pykka_ask),
            asyncio_queue=lambda: rate(n_ask, raw_pingpong, QueueActor, n_ask),
            deque_future=lambda: rate(n_ask, raw_pingpong, DequeActor, n_ask),
        ),
    )
    n_pykka_spawn = 500 if quick else 2000
    report.add(
        "spawn",
        "actors/s",
        rate(n_spawn, troupe_spawn, n_spawn),
        peers(
            pykka=lambda: rate(n_pykka_spawn, pykka_spawn, n_pykka_spawn),
            thespian=lambda: rate(n_spawn // 10, thespian_spawn, n_spawn // 10),
            asyncio_queue=lambda: rate(n_spawn, raw_spawn, QueueActor, n_spawn),
            deque_future=lambda: rate(n_spawn, raw_spawn, DequeActor, n_spawn),
        ),
    )
    n_memory = 100_000
    report.add(
        "memory_per_idle_actor",
        "bytes",
        measure_memory("troupe", n_memory),
        peers(
            pykka=lambda: measure_memory("pykka", 1000),
            thespian=lambda: measure_memory("thespian", 10_000),
            asyncio_queue=lambda: measure_memory("asyncio_queue", n_memory),
            deque_future=lambda: measure_memory("deque_future", n_memory),
        ),
        actors=n_memory,
    )
    report.write(args.json)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--probe-memory":
        print(memory_probe(sys.argv[2], int(sys.argv[3])))
    else:
        main()
