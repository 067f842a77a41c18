"""``ProcessHooks``: plug features (metrics, tracing setup) into a process tree.

One base class with before/after methods, in the manner of Dramatiq's
middleware: a feature subclasses it and overrides what it needs; the
supervisor calls every hook in order. Hooks run in the root process;
:class:`ChildHooks` run in each child, around building its tree (a hook in the
root names them by import path in :meth:`ProcessHooks.child_hooks`, since a
child is a fresh interpreter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from troupe import ActorSystem

    from .process_supervisor import ChildStatus, ProcessSupervisor


class ProcessHooks:
    """Callbacks of a :class:`ProcessSupervisor`; every method does nothing by default."""

    def child_environment(self) -> dict[str, str]:
        """Extra environment variables for every child process (e.g. a metrics directory)."""
        return {}

    def child_hooks(self) -> list[str]:
        """Import paths (``package.module:Class``) of :class:`ChildHooks` subclasses that every
        child makes (without arguments) and calls around building its tree; they read their
        settings from :meth:`child_environment`."""
        return []

    def tree_starting(self, tree: ProcessSupervisor) -> None:
        """Before the first child starts."""

    def child_started(self, tree: ProcessSupervisor, child: ChildStatus) -> None:
        """A child process was launched (``child.pid`` is set)."""

    def child_exited(self, tree: ProcessSupervisor, child: ChildStatus, returncode: int) -> None:
        """A child process ended, for whatever reason (``child.pid`` is the dead pid)."""

    def tree_stopped(self, tree: ProcessSupervisor) -> None:
        """After the last child has stopped."""


class ChildHooks:
    """Callbacks in a child process of a tree, around its ActorSystem's life; every method
    does nothing by default. An exception in ``tree_building`` or ``tree_built`` fails the
    child's start (its log names the reason, and the supervisor restarts it)."""

    async def tree_building(self, system: ActorSystem) -> None:
        """The child's system is running; its tree is not built yet."""

    async def tree_built(self, system: ActorSystem) -> None:
        """The tree is built (its actors run); the child is about to report ready."""

    async def tree_stopped(self, system: ActorSystem) -> None:
        """The child's system has shut down (close what ``tree_building`` opened)."""
