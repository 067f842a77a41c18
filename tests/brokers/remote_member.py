"""A process that exports a worker actor under a name (the remote-actor tests start it).

``python remote_member.py URL NAME LOG`` exports :class:`Worker` as NAME on the
broker at URL, with a 0.3 s heartbeat; each handler start is appended to LOG
(``<pid> <op> <id>``), and each handled ``record`` as ``<pid> done <id>``. Prints
``ready <pid>`` once exported; runs until killed (SIGTERM: a clean shutdown, its members
hear ``down``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from troupe import Actor, ActorSystem
from troupe.actors import export, remote_node
from troupe.brokers import Broker, connect


class Worker(Actor):
    """echo / slow / fail / record (told: tells its sender, then notes ``done``) / forward
    (tell a carried ref); a message with ``s`` sleeps that long first."""

    def __init__(self, log: str, who: str) -> None:
        self.log = log
        self.who = who

    def note(self, op: str, ident: Any) -> None:
        with open(self.log, "a") as out:
            out.write(f"{self.who} {op} {ident}\n")

    async def receive(self, message: Any) -> Any:
        op = message["op"]
        self.note(op, message.get("id"))
        if "s" in message:  # slow, or a record that takes its time
            await asyncio.sleep(message["s"])
        if op == "fail":
            raise KeyError(message["id"])
        elif op == "record":
            if self.sender is not None:
                self.sender.tell({"ack": message["id"], "who": self.who})
            self.note("done", message["id"])
        elif op == "forward":
            message["to"].tell({"done": message["id"], "who": self.who})
        return {"who": self.who, "id": message.get("id")}


HEARTBEAT = 0.3


async def serve(system: ActorSystem, broker: Broker, name: str, log: str, who: str) -> None:
    """Export a Worker as ``name`` from ``system``."""
    remote_node(system, broker, heartbeat=HEARTBEAT)
    worker = system.spawn(Worker, log, who, name="worker")
    await export(system, worker, name, via=broker, claim_idle=2.0)


async def main(url: str, name: str, log: str) -> None:
    broker = connect(url)
    await broker.connect()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ActorSystem("member") as system:
        await serve(system, broker, name, log, str(os.getpid()))
        sys.stdout.write(f"ready {os.getpid()}\n")
        sys.stdout.flush()
        await stop.wait()
    await broker.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
