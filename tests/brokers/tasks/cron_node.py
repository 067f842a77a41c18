"""One scheduler node for the multi-process cron test: ``python cron_node.py REDIS_URL SECONDS``.

Runs a CronScheduler (every second) on its own ActorSystem, Redis broker and
control store, and prints ``fired <entry> <due>`` for every tick it enqueued; its lease owner
name is ``pid-<its pid>``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from troupe import ActorSystem, Child
from troupe.brokers.tasks import CronEntry, CronScheduler, RedisControl, TaskClient, open_broker


async def main(url: str, seconds: float) -> None:
    client = TaskClient(open_broker(url), control=RedisControl(url))
    entries = [CronEntry("* * * * * *", "beat")]
    async with ActorSystem() as system:
        owner = f"pid-{os.getpid()}"
        ref = system.spawn(
            CronScheduler, client, entries, tick=0.05, lease=0.6, owner=owner, name="cron"
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
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
