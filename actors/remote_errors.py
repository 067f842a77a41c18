"""Errors of remote actors (:mod:`troupe.actors.remote`)."""

from __future__ import annotations

from troupe import TroupeError


class RemoteError(TroupeError):
    """A remote handler raised: ``remote_type`` (qualified class name) and ``remote_message``."""

    def __init__(self, target: str, remote_type: str, remote_message: str) -> None:
        self.target = target
        self.remote_type = remote_type
        self.remote_message = remote_message
        super().__init__(f"{target!r} raised {remote_type}: {remote_message}")


class NoMembers(TroupeError, LookupError):
    """No live member exports the name (none sent a heartbeat within its lease)."""

    def __init__(self, name: str, broker: str) -> None:
        self.name = name
        super().__init__(
            f"no live member exports {name!r} on {broker}: no process holds a heartbeat "
            f"lease for it; export it with troupe.actors.export(...) in a running process"
        )


class MemberLost(TroupeError):
    """The member handling an ask died (its lease expired) before it replied."""

    def __init__(self, name: str, member: str, retried: bool) -> None:
        self.name = name
        self.member = member
        advice = (
            "no other live member was left to retry on"
            if retried
            else "it may or may not have run, so it was not retried: mark the ask "
            "idempotent=True to have another member answer it"
        )
        super().__init__(
            f"member {member!r} of {name!r} died (its heartbeat lease expired) before it "
            f"replied to the ask; {advice}"
        )


class LeaseExpired(TroupeError):
    """A member stopped heartbeating without leaving (killed, hung, cut off): the reason in
    ``Terminated`` when it was a name's last member."""

    def __init__(self, name: str, member: str) -> None:
        self.name = name
        self.member = member
        super().__init__(
            f"member {member!r} of {name!r} stopped heartbeating without leaving "
            f"(its lease expired: killed, hung or cut off from the broker)"
        )


__all__ = ["LeaseExpired", "MemberLost", "NoMembers", "RemoteError"]
