"""Membership of an exported name: who holds a live heartbeat lease, as seen by one node.

Every member broadcasts ``up`` (its id, its inbox, its lease in seconds) on the
name's topic each heartbeat, and ``down`` when it leaves. A node that needs the
name opens a tail on that topic and asks (``probe``) for an ``up`` at once, so it
knows the members within a round trip instead of a heartbeat. A member whose
lease ran out without a new ``up`` is dead: its asks fail (or are retried when
idempotent) and, when it was the last one, watchers get ``Terminated``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Seconds a member that said ``down`` stays known: replies it sent before may still come.
LEAVE_GRACE = 1.0


@dataclass(slots=True)
class Member:
    """One live member of a name: its node id, inbox topic and lease expiry (loop time)."""

    id: str
    inbox: str
    expires: float
    leaving: bool = False


class Members:
    """The live members of one name, kept from heartbeats; picks one per ask (round robin)."""

    def __init__(self, name: str, settle_at: float) -> None:
        self.name = name
        self.members: dict[str, Member] = {}
        self.settle_at = settle_at  # loop time after which "no member" is the answer
        self.changed = asyncio.Event()
        self.watchers: list[Callable[[BaseException | None], Any]] = []
        self._turn = itertools.count()
        self._live: list[Member] | None = None  # live() without exclusions, until a change
        #: why the last live member went: None when it left cleanly (set by the node when
        #: a lease expires)
        self.last_gone: BaseException | None = None

    def heartbeat(self, member: str, inbox: str, lease: float, now: float) -> None:
        """An ``up`` from ``member``: its lease runs ``lease`` seconds from ``now``."""
        known = self.members.get(member)
        if known is None:
            self.members[member] = Member(member, inbox, now + lease)
            self._live = None
            self.changed.set()
        elif not known.leaving:
            known.expires = now + lease

    def leave(self, member: str, now: float) -> None:
        """A ``down`` from ``member``: no new asks go to it; it is gone after a grace."""
        known = self.members.get(member)
        if known is not None:
            known.leaving = True
            self._live = None
            known.expires = min(known.expires, now + LEAVE_GRACE)
            if not self.live():
                self.last_gone = None  # the last live member left cleanly

    def expire(self, now: float) -> list[Member]:
        """Remove and return the members whose lease ran out by ``now``."""
        gone = [m for m in self.members.values() if m.expires <= now]
        for member in gone:
            del self.members[member.id]
            self._live = None
        return gone

    def live(self, exclude: frozenset[str] = frozenset()) -> list[Member]:
        """Members that take new asks (not leaving), other than ``exclude``."""
        if not exclude:
            if self._live is None:
                self._live = [m for m in self.members.values() if not m.leaving]
            return list(self._live)
        return [m for m in self.members.values() if not m.leaving and m.id not in exclude]

    def pick(self, exclude: frozenset[str] = frozenset()) -> Member | None:
        """The next live member in turn, or None."""
        if exclude:
            live = self.live(exclude)
        else:
            if self._live is None:
                self._live = [m for m in self.members.values() if not m.leaving]
            live = self._live
        if not live:
            return None
        return live[next(self._turn) % len(live)]

    def settled(self, now: float) -> bool:
        """True once a member is known or the first probe had its time to be answered."""
        return bool(self.members) or now >= self.settle_at

    async def wait_settled(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until :meth:`settled` (a member answered, or the probe time ran out)."""
        while not self.settled(loop.time()):
            self.changed.clear()
            left = self.settle_at - loop.time()
            try:
                async with asyncio.timeout(None if left == float("inf") else max(0.0, left)):
                    await self.changed.wait()
            except TimeoutError:
                pass

    def watch(self, callback: Callable[[BaseException | None], Any]) -> None:
        """Call ``callback(reason)`` once when the name has no live member left."""
        self.watchers.append(callback)

    def notify_if_empty(self, now: float) -> None:
        """Tell the watchers once no member is left (after the membership settled): the
        reason is None when the last member left cleanly, else why it was lost."""
        if self.members or not self.settled(now) or not self.watchers:
            return
        watchers, self.watchers = self.watchers, []
        for callback in watchers:
            callback(self.last_gone)


__all__ = ["LEAVE_GRACE", "Member", "Members"]
