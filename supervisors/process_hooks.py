"""``ProcessHooks``: plug features (metrics, tracing setup) into a process tree.

One base class with before/after methods, in the manner of Dramatiq's
middleware: a feature subclasses it and overrides what it needs; the
supervisor calls every hook in order. Hooks run in the root process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .process_supervisor import ChildStatus, ProcessSupervisor


class ProcessHooks:
    """Callbacks of a :class:`ProcessSupervisor`; every method does nothing by default."""

    def child_environment(self) -> dict[str, str]:
        """Extra environment variables for every child process (e.g. a metrics directory)."""
        return {}

    def tree_starting(self, tree: ProcessSupervisor) -> None:
        """Before the first child starts."""

    def child_started(self, tree: ProcessSupervisor, child: ChildStatus) -> None:
        """A child process was launched (``child.pid`` is set)."""

    def child_exited(self, tree: ProcessSupervisor, child: ChildStatus, returncode: int) -> None:
        """A child process ended, for whatever reason (``child.pid`` is the dead pid)."""

    def tree_stopped(self, tree: ProcessSupervisor) -> None:
        """After the last child has stopped."""
