"""``DeathWatch``, a part of the cell (:mod:`troupe.cell`): callbacks told ``Terminated``.

Each is told ``Terminated(ref, reason)`` once, when the actor stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .cell_state import CellState
from .state import State, Terminated

logger = logging.getLogger(__name__)


class DeathWatch(CellState):
    """Callbacks told when the actor stops."""

    __slots__ = ()

    def add_watcher(self, callback: Callable[[Terminated], Any]) -> None:
        """Call ``callback(Terminated)`` once this actor stops (at once if it has)."""
        if self.state is State.STOPPED:
            callback(Terminated(self.ref, self.failure))
            return
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(callback)

    def remove_watcher(self, callback: Callable[[Terminated], Any]) -> None:
        """Stop calling ``callback`` when this actor stops."""
        if self.watchers and callback in self.watchers:
            self.watchers.remove(callback)

    def _notify_watchers(self, reason: BaseException | None) -> None:
        """Tell every watcher ``Terminated(ref, reason)``, once (the actor has stopped)."""
        watchers, self.watchers = self.watchers, None
        notice = Terminated(self.ref, reason)
        for watcher in watchers or ():
            try:
                watcher(notice)
            except Exception:
                logger.exception("death watcher of %s failed", self.name)
