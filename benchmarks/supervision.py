"""What supervision costs: restart latency and steady-state tell throughput.

Restart latency is measured inside the actor, from the moment its handler
raises to the moment the next message's handler starts on the fresh instance
(zero backoff), for a child of a ``Supervisor`` and, as the reference, for a
top-level actor restarted by the system's guardian. Throughput compares
one-way ``tell`` to a supervised child and to an unsupervised top-level actor
in the same run, alternating so both see the same machine load. Failure logs
are discarded (a NullHandler), so terminal output is not what is measured.

Targets: restart p99 under 1 ms; supervised throughput at least 0.9x.

    python benchmarks/supervision.py --quick --json benchmarks/results/supervision.json
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Report, parse_args

import troupe
from troupe import Actor, ActorRef, ActorSystem
from troupe.supervisors import ChildSpec, SupervisorSpec, start_supervisor


class Boom(Exception):
    pass


class Probe:
    """Where the crashing actor writes its timings (survives restarts)."""

    def __init__(self) -> None:
        self.crashed_at = 0.0
        self.samples: list[float] = []


class Crasher(Actor):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def receive(self, message: Any) -> Any:
        if message == "crash":
            self.probe.crashed_at = time.perf_counter()
            raise Boom()
        self.probe.samples.append(time.perf_counter() - self.probe.crashed_at)
        return None


class Counter(Actor):
    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Any) -> Any:
        self.count += 1
        return self.count


async def restart_latency(n: int, supervised: bool) -> list[float]:
    """Seconds from a crash to the next message handled, ``n`` samples."""
    probe = Probe()
    async with ActorSystem("bench", ask_timeout=None) as system:
        if supervised:
            spec = SupervisorSpec(
                [ChildSpec(Crasher, (probe,), name="crasher")],
                name="root",
                max_restarts=n + 100,
                within=3600,
            )
            await start_supervisor(system, spec)
            ref = system.lookup("crasher")
        else:
            ref = system.spawn(Crasher, probe, name="crasher")
        for _ in range(50):  # warm up
            await crash_once(ref)
        probe.samples.clear()
        for _ in range(n):
            await crash_once(ref)
    return probe.samples


async def crash_once(ref: ActorRef) -> None:
    ref.tell("crash")
    await ref.ask("next")


async def tell_rate(n: int, supervised: bool) -> float:
    """Seconds for ``n`` tells (awaited for backpressure) plus a final ask."""
    async with ActorSystem("bench") as system:
        if supervised:
            spec = SupervisorSpec([ChildSpec(Counter, name="counter")], name="root")
            await start_supervisor(system, spec)
            ref = system.lookup("counter")
        else:
            ref = system.spawn(Counter, name="counter")
        start = time.perf_counter()
        for i in range(n):
            await ref.tell(i)
        await ref.ask("flush")
        return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    quick = args.quick
    repeat = args.repeat or (3 if quick else 5)
    n_restarts = 10_000 if quick else 50_000
    n_tell = 200_000 if quick else 500_000
    quiet = logging.getLogger("troupe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    report = Report("supervision")
    loop_name = "uvloop" if troupe.loop.uvloop_available() else "asyncio"
    print(f"event loop: {loop_name}; {n_restarts} restarts; tell median of {repeat}")

    supervised = troupe.run(restart_latency(n_restarts, supervised=True))
    guardian = troupe.run(restart_latency(n_restarts, supervised=False))
    for q in (50, 99):
        report.add(
            f"restart_latency_p{q}",
            "us",
            percentile(supervised, q) * 1e6,
            {"guardian (unsupervised)": percentile(guardian, q) * 1e6},
            samples=len(supervised),
            target_us=1000 if q == 99 else None,
        )

    on: list[float] = []
    off: list[float] = []
    for _ in range(repeat):
        off.append(troupe.run(tell_rate(n_tell, supervised=False)))
        on.append(troupe.run(tell_rate(n_tell, supervised=True)))
    rate_on, rate_off = n_tell / statistics.median(on), n_tell / statistics.median(off)
    report.add(
        "tell_supervised",
        "msg/s",
        rate_on,
        {"unsupervised": rate_off},
        ratio=rate_on / rate_off,
        target_ratio=0.9,
    )
    report.write(args.json)


if __name__ == "__main__":
    main()
