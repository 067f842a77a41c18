"""Errors raised by actor supervisors and links."""

from __future__ import annotations

from troupe.errors import TroupeError


class RestartIntensityExceeded(TroupeError):
    """A supervisor gave up: a child kept failing (a crash loop past the limit), or its
    children stopped and needed more restarts within the window than allowed.

    The supervisor stopped its children and failed with this error; its own
    supervisor decides next, and at the root of a tree it stops the system
    (``ActorSystem.failure``; ``async with`` raises it on exit).
    """

    def __init__(
        self,
        supervisor: str,
        child: str,
        max_restarts: int,
        within: float,
        cause: BaseException | None,
        in_row: int | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.max_restarts = max_restarts
        self.within = within
        self.cause = cause
        self.in_row = in_row
        because = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        if in_row is not None:
            how = (
                f"child {child!r} failed {in_row} times in a row, the last {max_restarts} "
                f"after backoff (a crash loop{because})"
            )
        else:
            how = (
                f"more than {max_restarts} restarts within {within:g} s "
                f"(last failed child {child!r}{because})"
            )
        super().__init__(
            f"supervisor {supervisor!r} gave up: {how}; raise max_restarts/within "
            "or fix the failing child"
        )


class LinkFailed(TroupeError):
    """Raised into an actor because an actor linked to it failed."""

    def __init__(self, actor: str, cause: BaseException, chain: frozenset[str]) -> None:
        self.actor = actor
        self.cause = cause
        self.chain = chain
        super().__init__(f"linked actor {actor!r} failed: {type(cause).__name__}: {cause}")


class SupervisorRequestError(TroupeError):
    """A start_child / terminate_child request could not be carried out."""
