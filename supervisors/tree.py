"""The live supervision tree of a system, as data (for the CLI, metrics and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from troupe.threaded import ThreadActor

from .supervisor import Supervisor

if TYPE_CHECKING:
    from troupe.cell import ActorCell
    from troupe.system import ActorSystem


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
        }

    def walk(self) -> list[TreeNode]:
        """This node and every node under it, depth first."""
        nodes = [self]
        for child in self.children:
            nodes.extend(child.walk())
        return nodes


def live_tree(system: ActorSystem) -> list[TreeNode]:
    """The system's live actors as trees, top-level actors in spawn order; call it on
    the system's loop. ``format_tree`` renders it, ``TreeNode.to_dict`` serialises it."""
    roots = []
    for ref in system.actors():
        cell = system.cell_of(ref)
        if cell.parent is None:
            roots.append(_node(cell, None))
    return roots


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

    for node in nodes:
        add(node, 0)
    return "\n".join(lines)


def _node(cell: ActorCell, restart: str | None) -> TreeNode:
    actor = cell.actor
    strategy = None
    restart_types: dict[str, str] = {}
    if isinstance(actor, Supervisor):
        kind = "supervisor"
        strategy = actor.spec.strategy.value
        restart_types = {c.name: c.restart.value for c in actor.which_children()}
    elif isinstance(actor, ThreadActor):
        kind = "thread"
    else:
        kind = "actor"
    children = tuple(
        _node(child, restart_types.get(name)) for name, child in (cell.children or {}).items()
    )
    return TreeNode(
        name=cell.name,
        kind=kind,
        state=cell.state.name,
        restarts=cell.restarts,
        mailbox_depth=len(cell.mailbox) + cell.mailbox.waiting,
        restart=restart,
        strategy=strategy,
        children=children,
    )
