"""Small helpers shared by the tests of troupe.actors."""

from __future__ import annotations

from typing import Any

from tests.helpers import eventually
from troupe import Actor

__all__ = ["Recorder", "eventually"]  # eventually: the one shared helper, re-exported


class Recorder(Actor):
    """Keeps every message it gets (in a list passed in, so it survives restarts)."""

    def __init__(self, seen: list[Any], fail_first: int = 0) -> None:
        self.seen = seen
        self.fail_first = fail_first

    def receive(self, message: Any) -> Any:
        if self.fail_first > 0 and len(self.seen) < self.fail_first:
            self.seen.append(("failed", message))
            raise RuntimeError(f"boom on {message!r}")
        self.seen.append(message)
        return message
