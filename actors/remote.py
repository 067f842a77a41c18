"""Actors across processes and machines, over the broker you already run.

>>> # process A:
>>> # await export(system, ref, "orders.service", via=broker)
>>> # process B:
>>> # orders = remote(system, "orders.service", via=broker)
>>> # total = await orders.ask({"sku": "a", "qty": 2})

:func:`export` serves a local actor under a name on a broker; :func:`remote`
gives a :class:`RemoteRef` to that name from any process on the same broker.
Several processes may export one name: told messages are shared among them
(competing consumers of one stream, at least once: attempts counted, DLQ);
asks go to one live member each, in turn, at most once (``idempotent=True``:
retried on another member when the one handling it dies). Membership is a
heartbeat lease per member on the broker: an ask to a name without a live
member fails fast with :class:`NoMembers`, and :meth:`RemoteRef.watch` tells
``Terminated`` when the last member is gone. Messages and replies are JSON; a
ref inside a message (a sender, a reply-to) works in the process receiving it.
Order per sender and target: told messages keep it (one stream), and so do asks
to one member; a tell and a later ask are not ordered with each other.
"""

from __future__ import annotations

import weakref
from typing import Any

from troupe import ActorRef, ActorSystem, SystemClosed
from troupe.brokers import Broker

from .remote_node import RemoteNode
from .remote_ref import RemoteRef

_nodes: weakref.WeakKeyDictionary[ActorSystem, dict[int, RemoteNode]] = weakref.WeakKeyDictionary()


def remote_node(system: ActorSystem, via: Broker, **options: Any) -> RemoteNode:
    """The :class:`RemoteNode` of ``system`` on ``via`` (made on first use; ``options``:
    ``heartbeat`` seconds and ``missed`` heartbeats, taken when it is made)."""
    if not system.is_running or system.is_closing:
        raise SystemClosed(f"actor system {system.name!r} is not running")
    nodes = _nodes.setdefault(system, {})
    found = nodes.get(id(via))
    if found is None or found.broker is not via or not found.runner.is_alive:
        found = nodes[id(via)] = RemoteNode(system, via, **options)
    else:
        found.check_options(**options)
    return found


async def export(
    system: ActorSystem, ref: ActorRef, name: str, *, via: Broker, **bridge_options: Any
) -> RemoteNode:
    """Serve ``ref`` under ``name`` on the broker ``via``, from this process.

    Told messages reach ``ref`` through a :class:`~troupe.brokers.ConsumerBridge`
    (``bridge_options`` are its settings: ``max_deliveries``, ``claim_idle``, ...);
    asks through this system's inbox. The export ends when ``ref`` stops or
    the system shuts down (its members hear ``down`` at once).
    """
    found = remote_node(system, via)
    await found.export(ref, name, **bridge_options)
    return found


def remote(system: ActorSystem, name: str, *, via: Broker) -> RemoteRef:
    """A ref to the actor exported as ``name`` on ``via`` (by any process)."""
    found = remote_node(system, via)
    found.view(name)  # learn the members now, before the first ask
    return RemoteRef(found, export=name)


__all__ = ["RemoteNode", "RemoteRef", "export", "remote", "remote_node"]
