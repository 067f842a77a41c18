"""Process-tree metrics: ``ProcessHooks`` that point children at one ``/metrics`` endpoint.

>>> from troupe.metrics import MetricsEndpoint
>>> from troupe.supervisors import ProcessSpec, ProcessSupervisor
>>> endpoint = MetricsEndpoint(port=0)
>>> tree = ProcessSupervisor([ProcessSpec("app:build", count=2)],
...                          hooks=[TreeMetricsHooks(endpoint, owns_endpoint=True)])
>>> endpoint.close()

Each child's ActorSystem writes its counters to a file in the endpoint's tree
directory (``TROUPE_METRICS_DIR``, given to children by
:meth:`TreeMetricsHooks.child_environment`); the endpoint sums them with the
root's own. The supervisor's view of every child (up or down, restarts) is
published as ``troupe_process_up`` and ``troupe_process_restarts_total``.
"""

from __future__ import annotations

import logging
import threading

from troupe.metrics.export import MetricsEndpoint
from troupe.metrics.store import SlotSnapshot

from .process_hooks import ProcessHooks
from .process_supervisor import ChildStatus, ProcessSupervisor

logger = logging.getLogger(__name__)


class TreeMetricsHooks(ProcessHooks):
    """Feeds a process tree into a :class:`MetricsEndpoint`.

    ``owns_endpoint`` closes the endpoint once the tree has stopped.
    """

    def __init__(self, endpoint: MetricsEndpoint, *, owns_endpoint: bool = False) -> None:
        self.endpoint = endpoint
        self.owns_endpoint = owns_endpoint
        self._children: dict[str, tuple[int, int]] = {}  # name -> (up, restarts)
        self._lock = threading.Lock()
        endpoint.add_source(self.snapshots)

    def child_environment(self) -> dict[str, str]:
        return self.endpoint.environment()

    def child_started(self, tree: ProcessSupervisor, child: ChildStatus) -> None:
        with self._lock:
            self._children[child.name] = (1, child.restarts)

    def child_exited(self, tree: ProcessSupervisor, child: ChildStatus, returncode: int) -> None:
        with self._lock:
            self._children[child.name] = (0, child.restarts)

    def tree_stopped(self, tree: ProcessSupervisor) -> None:
        if self.owns_endpoint:
            self.endpoint.close()

    def snapshots(self) -> list[SlotSnapshot]:
        """The supervisor's view of every child, as ``("child", name)`` snapshots."""
        with self._lock:
            children = dict(self._children)
        return [
            SlotSnapshot(("child", name), [up, restarts], True)
            for name, (up, restarts) in children.items()
        ]


def process_tree_hooks(
    port: int, addr: str = "127.0.0.1", *, allow_actions: bool = False, token: str | None = None
) -> list[ProcessHooks]:
    """Serve a tree's ``/metrics`` on ``addr:port`` (what ``troupe run --metrics-port`` uses),
    with the observer, ``/healthz`` and ``/readyz`` beside it
    (:mod:`troupe.supervisors.process_observer`)."""
    from .process_observer import TreeObserverHooks

    endpoint = MetricsEndpoint(port, addr)
    logger.info("process tree metrics at %s", endpoint.url)
    try:
        observer = TreeObserverHooks(endpoint, allow_actions=allow_actions, token=token)
    except BaseException:
        endpoint.close()
        raise
    return [observer, TreeMetricsHooks(endpoint, owns_endpoint=True)]
