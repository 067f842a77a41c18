"""The live supervision tree of a system, as data (for the CLI, metrics and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from troupe import Child, ThreadActor

from .supervisor import Supervisor

if TYPE_CHECKING:
    from troupe import ActorSystem


@dataclass(frozen=True, slots=True)
class TreeNode:
    """One live actor: ``kind`` is "supervisor", "thread" (a ThreadActor) or "actor";
    ``state`` a :class:`~troupe.State` name; ``restart`` its restart type when a
    supervisor owns it; ``strategy`` set for supervisors."""

    name: str
    kind: str
    state: str
    restarts: int
    mailbox_depth: int
    restart: str | None
    strategy: str | None
    children: tuple[TreeNode, ...]
    hidden: int = 0  # live children left out (``live_tree(max_children=...)``)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "restarts": self.restarts,
            "mailbox_depth": self.mailbox_depth,
            "restart": self.restart,
            "strategy": self.strategy,
            "children": [c.to_dict() for c in self.children],
            "hidden": self.hidden,
        }

    def walk(self) -> list[TreeNode]:
        """This node and every node under it, depth first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def live_tree(system: ActorSystem, *, max_children: int | None = None) -> list[TreeNode]:
    """The system's live actors as trees, top-level actors in spawn order; call it on
    the system's loop. ``format_tree`` renders it, ``TreeNode.to_dict`` serialises it.

    ``max_children`` keeps the first that many children of each actor (and top-level
    actors); the others are counted in ``hidden``, so a huge tree costs little to show.
    """
    return [_node(child, None, None, max_children) for child in system.top_level()[:max_children]]


def format_tree(nodes: list[TreeNode]) -> str:
    """An indented text rendering, one actor per line."""
    lines: list[str] = []

    def add(node: TreeNode, depth: int) -> None:
        extra = f" {node.strategy}" if node.strategy else ""
        restart = f" {node.restart}" if node.restart else ""
        lines.append(
            f"{'  ' * depth}{node.name} [{node.kind}{extra}{restart}] {node.state} "
            f"restarts={node.restarts} mailbox={node.mailbox_depth}"
        )
        for child in node.children:
            add(child, depth + 1)
        if node.hidden:
            lines.append(f"{'  ' * (depth + 1)}... {node.hidden} more")

    for node in nodes:
        add(node, 0)
    return "\n".join(lines)


def _node(
    child: Child, restart: str | None, restarts: int | None, limit: int | None = None
) -> TreeNode:
    """``restart``/``restarts``: as the supervisor that owns ``child`` sees it (restarts
    then include earlier incarnations of a child it started again)."""
    actor = child.actor
    strategy = None
    infos: dict[str, tuple[str, int]] = {}
    if isinstance(actor, Supervisor):
        kind = "supervisor"
        strategy = actor.spec.strategy.value
        infos = {c.name: (c.restart.value, c.restarts) for c in actor.which_children()}
    elif isinstance(actor, ThreadActor):
        kind = "thread"
    else:
        kind = "actor"
    kids = child.children()
    shown = []
    for kid in kids[:limit]:
        kid_restart, kid_restarts = infos.get(kid.name, (None, None))
        shown.append(_node(kid, kid_restart, kid_restarts, limit))
    children = tuple(shown)
    return TreeNode(
        name=child.name,
        kind=kind,
        state=child.state.name,
        restarts=child.restarts if restarts is None else restarts,
        mailbox_depth=child.mailbox_depth,
        restart=restart,
        strategy=strategy,
        children=children,
        hidden=len(kids) - len(children),
    )
