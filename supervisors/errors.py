"""Errors raised by actor supervisors and links."""

from __future__ import annotations

from troupe.errors import TroupeError


class RestartIntensityExceeded(TroupeError):
    """A supervisor gave up: its children needed more restarts in the window than allowed.

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
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.max_restarts = max_restarts
        self.within = within
        self.cause = cause
        because = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts within "
            f"{within:g} s (last failed child {child!r}{because}); raise max_restarts/within "
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
