"""One scheduler node for the multi-process cron tests:
``python cron_node.py URL SECONDS [LEASE [CONTROL_URL]]``.

Runs a CronScheduler (every second) on its own ActorSystem, broker (URL) and Redis
control store (CONTROL_URL, default URL; LEASE default 0.6 s), and prints
``fired <entry> <due>`` for every tick it enqueued; its lease owner name is ``pid-<its pid>``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from troupe import ActorSystem, Child
from troupe.brokers.tasks import CronEntry, CronScheduler, RedisControl, TaskClient, open_broker


async def main(url: str, seconds: float, lease: float, control_url: str) -> None:
    client = TaskClient(open_broker(url), control=RedisControl(control_url))
    entries = [CronEntry("* * * * * *", "beat")]
    async with ActorSystem() as system:
        owner = f"pid-{os.getpid()}"
        ref = system.spawn(
            CronScheduler, client, entries, tick=0.05, lease=lease, owner=owner, name="cron"
        )
        printed = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(0.05)
            scheduler = Child.of(ref).actor
            assert isinstance(scheduler, CronScheduler)
            for name, due in scheduler.fired[printed:]:
                sys.stdout.write(f"fired {name} {due}\n")
                sys.stdout.flush()
            printed = len(scheduler.fired)


if __name__ == "__main__":
    args = sys.argv[1:]
    lease = float(args[2]) if len(args) > 2 else 0.6
    asyncio.run(main(args[0], float(args[1]), lease, args[3] if len(args) > 3 else args[0]))
