"""Two trees the cluster tests start with ``troupe run ... --broker URL`` (two "hosts").

- ``right``: an ``echo`` actor (exported with ``--export right.echo=echo``) answering
  with its tree and pid.
- ``left``: a ``status`` actor (``--export left.status=status``) that asks
  ``right.echo`` through the cluster (``call``), watches it (``watch``) and reports
  what it saw and the cluster's members (``status``).
"""

from __future__ import annotations

import os
from typing import Any

from troupe import Actor, ActorSystem, Terminated
from troupe.actors.cluster import cluster_of


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return {"tree": "right", "pid": os.getpid(), "got": message}


class Status(Actor):
    def __init__(self) -> None:
        self.gone: str | None = None
        self.watching = False

    async def receive(self, message: Any) -> Any:
        cluster = cluster_of(self.system)
        if isinstance(message, Terminated):
            self.gone = type(message.reason).__name__ if message.reason else "left"
            return None
        op = message["op"]
        if op == "call":
            return await cluster.remote("right.echo").ask({"from": "left"}, timeout=10)
        if op == "watch":
            cluster.remote("right.echo").watch(self.ref)
            self.watching = True
        return {
            "pid": os.getpid(),
            "members": [m.id for m in cluster.members()],
            "watching": self.watching,
            "right_gone": self.gone,
        }


def right(system: ActorSystem) -> None:
    system.spawn(Echo, name="echo")


def left(system: ActorSystem) -> None:
    system.spawn(Status, name="status")
