"""The supervision tree in the observer: :func:`live_tree` with each actor's metrics group.

Registered on import of :mod:`troupe.supervisors` (see :mod:`troupe.observe`).
The observer reads a group's messages/s and handler p99 for every actor in it.
Readiness: a process whose actors were stopped past their restart limit (a
supervisor gave up on them) is not ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from troupe import observe
from troupe.metrics import group_label

from .tree import TreeNode, live_tree

if TYPE_CHECKING:
    from troupe import ActorSystem

#: Children listed per actor (and top-level actors per system); the rest are counted.
MAX_CHILDREN = 20


def tree_section(system: ActorSystem) -> dict[str, Any]:
    """The live tree as dicts (``nodes``), every node also naming its metrics ``group``;
    at most :data:`MAX_CHILDREN` children of an actor are listed, the others counted
    in its ``hidden`` (top-level ones in ``hidden`` beside ``nodes``)."""

    def label(name: str) -> str | None:
        ref = system.find(name)
        return group_label(ref) if ref is not None else None

    def node(tree_node: TreeNode) -> dict[str, Any]:
        return {
            "name": tree_node.name,
            "kind": tree_node.kind,
            "state": tree_node.state,
            "restarts": tree_node.restarts,
            "mailbox_depth": tree_node.mailbox_depth,
            "restart": tree_node.restart,
            "strategy": tree_node.strategy,
            "group": label(tree_node.name),
            "children": [node(c) for c in tree_node.children],
            "hidden": tree_node.hidden,
        }

    nodes = [node(n) for n in live_tree(system, max_children=MAX_CHILDREN)]
    return {"nodes": nodes, "hidden": max(0, len(system.top_level()) - len(nodes))}


def supervisors_ready(system: ActorSystem) -> list[str]:
    """Not ready once a supervisor (or the system's restart policy) gave up on an actor."""
    given_up = system.stopped_by_policy
    if given_up:
        return [f"{system.name}: {given_up} actors stopped past their restart limit"]
    return []


observe.add_section("tree", tree_section)
observe.add_readiness("supervisors", supervisors_ready)
