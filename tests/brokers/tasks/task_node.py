"""One worker process for the crash tests:
``python task_node.py URL LOG CONCURRENCY PREFETCH SECONDS``.

Runs a WorkerPool (queue ``default``) whose task ``work(n)`` appends ``start <pid> <n>``
to LOG, sleeps SECONDS and appends ``done <pid> <n>``; prints ``ready`` once the pool has
started and runs until it is killed (SIGTERM: a graceful stop).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from troupe import ActorSystem
from troupe.brokers.tasks import TaskRegistry, WorkerPool


def note(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)


async def main(url: str, log: str, concurrency: int, prefetch: int, seconds: float) -> None:
    tasks = TaskRegistry()
    pid = os.getpid()

    @tasks.task
    def work(n: int) -> None:
        note(log, f"start {pid} {n}")
        time.sleep(seconds)
        note(log, f"done {pid} {n}")

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ActorSystem() as system:
        pool = WorkerPool(url, tasks, concurrency=concurrency, prefetch=prefetch)
        await pool.start(system)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
        await pool.stop()


if __name__ == "__main__":
    url, log, concurrency, prefetch, seconds = sys.argv[1:6]
    asyncio.run(main(url, log, int(concurrency), int(prefetch), float(seconds)))
