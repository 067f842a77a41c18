"""The child side of a process tree: run one tree in a fresh interpreter.

A child is started as ``python -c "...; main()" CONFIG_JSON`` with one end of
a socket pair as its stdin (the *control socket*). The child

- moves the control socket off fd 0 (stdin becomes /dev/null) and reports
  ``ready`` on it once its tree is built;
- watches it from a thread: end-of-file means the parent died, and the child
  drains and exits (then ``os._exit`` after the deadline), so no child
  outlives its parent, whatever killed the parent;
- on SIGTERM or SIGINT stops intake and drains its ActorSystem within the
  deadline (``ActorSystem.shutdown``) and exits 0.

Exit statuses: 0 after a stop (or after the root actor stopped normally),
1 when the tree failed to start or its root actor failed, 2 for a bad config,
70 when the parent died and the drain overran the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .process_hooks import ChildHooks

from troupe.metrics.store import ENV_DIR
from troupe.observe_ipc import serve_socket, socket_path

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ORPHANED = 70
READY = b"ready\n"
BOOTSTRAP = "from troupe.supervisors.process_child import main; main()"


@dataclass(frozen=True)
class ChildConfig:
    """Everything a child needs, passed as JSON on its command line."""

    name: str
    target: str
    tree: str  # the process tree's name
    shutdown: float
    kill_grace: float
    log_level: str | None
    sys_path: list[str]
    #: import paths of ChildHooks subclasses (see ProcessHooks.child_hooks)
    child_hooks: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChildConfig:
        return cls(**json.loads(text))


class _StopRequest:
    """Set by a signal, by the parent's death, or by the root actor stopping."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._loop, self._event = loop, event
            if self.reason is not None:
                event.set()

    def request(self, reason: str) -> None:
        """Ask for a drain; safe from signal handlers and other threads."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            # RuntimeError: the loop already closed, we are exiting anyway
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)


def _take_control_socket() -> socket.socket | None:
    """Move the control socket from fd 0 to a private fd; stdin becomes /dev/null."""
    fd = os.dup(0)
    try:
        sock = socket.socket(fileno=fd)
    except OSError:  # not started by a ProcessSupervisor: no control socket
        os.close(fd)
        return None
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return sock


def _watch_parent(control: socket.socket, stop: _StopRequest, deadline: float) -> None:
    """Block until the parent's end of the control socket closes, then drain and exit."""
    try:
        while control.recv(256):
            pass
    except OSError:
        pass
    logger.warning("parent process is gone; draining and exiting")
    stop.request("parent died")
    time.sleep(deadline)
    logger.error("drain overran %.1f s after the parent died; exiting now", deadline)
    logging.shutdown()
    os._exit(EXIT_ORPHANED)


async def _serve(config: ChildConfig, control: socket.socket | None, stop: _StopRequest) -> int:
    from troupe import ActorSystem

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.request, signal.Signals(sig).name)
    stop.bind(loop, stopping)
    system = ActorSystem(config.name, shutdown_timeout=config.shutdown)
    system.start()
    observed = await _serve_observer(system)
    try:
        return await _run_tree(config, control, stop, stopping, system)
    finally:
        if observed is not None:
            observed.close()
            with contextlib.suppress(OSError):
                os.unlink(socket_path(os.environ[ENV_DIR]))


async def _serve_observer(system: Any) -> asyncio.Server | None:
    """Answer the root's observer on a socket in the tree's metrics directory, if any."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return None
    try:
        return await serve_socket(system, socket_path(directory))
    except OSError as exc:
        logger.warning("observer socket in %s not served: %s", directory, exc)
        return None


async def _run_tree(
    config: ChildConfig,
    control: socket.socket | None,
    stop: _StopRequest,
    stopping: asyncio.Event,
    system: Any,
) -> int:
    from troupe import Terminated
    from troupe.supervisors.process_target import resolve

    root_failure: list[BaseException | None] = []
    hooks: list[ChildHooks] = []
    try:
        tree = resolve(config.target)
        hooks = _child_hooks(config.child_hooks)
        building = asyncio.ensure_future(_build(tree, hooks, system))
        stop_wait = asyncio.ensure_future(stopping.wait())
        await asyncio.wait([building, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not building.done():
            logger.warning("stopped (%s) while the tree was still starting", stop.reason)
            building.cancel()
            await system.shutdown(config.shutdown)
            await _stopped(hooks, system)
            return EXIT_OK
        root = building.result()
    except Exception:
        logger.exception("tree %s failed to start", config.target)
        await system.shutdown(config.shutdown)
        await _stopped(hooks, system)
        return EXIT_FAILED
    if root is not None:

        def root_stopped(terminated: Terminated) -> None:
            root_failure.append(terminated.reason)
            stop.request(f"root actor {root.name} stopped")

        system.watch(root, root_stopped)
    logger.info("tree %s is up (%d actors)", config.target, len(system.actors()))
    if control is not None:
        try:
            control.sendall(READY)
        except OSError:
            stop.request("parent died")
    await stopping.wait()
    logger.info("draining (%s), deadline %.1f s", stop.reason, config.shutdown)
    report = await system.shutdown(config.shutdown)
    await _stopped(hooks, system)
    if report.drained:
        logger.info("drained in %.2f s; exiting", report.seconds)
    else:
        logger.warning(
            "deadline reached after %.2f s: %d messages undelivered, %d handlers cancelled",
            report.seconds,
            report.undelivered,
            report.cancelled,
        )
    if root_failure and root_failure[0] is not None:
        logger.error("root actor failed: %r", root_failure[0])
        return EXIT_FAILED
    return EXIT_OK


def _child_hooks(paths: list[str]) -> list[ChildHooks]:
    """Make the ChildHooks the root named (TargetError when a path names something else)."""
    from .process_hooks import ChildHooks
    from .process_target import TargetError, load

    hooks = []
    for path in paths:
        kind = load(path)
        if not (isinstance(kind, type) and issubclass(kind, ChildHooks)):
            raise TargetError(
                f"{path!r} is not a ChildHooks subclass (see ProcessHooks.child_hooks)"
            )
        hooks.append(kind())
    return hooks


async def _build(tree: Any, hooks: list[ChildHooks], system: Any) -> Any:
    """Build ``tree`` in ``system`` between the hooks' ``tree_building`` and ``tree_built``."""
    for hook in hooks:
        await hook.tree_building(system)
    root = await tree.build(system)
    for hook in hooks:
        await hook.tree_built(system)
    return root


async def _stopped(hooks: list[ChildHooks], system: Any) -> None:
    for hook in reversed(hooks):
        try:
            await hook.tree_stopped(system)
        except Exception:
            logger.exception("%s.tree_stopped failed", type(hook).__name__)


def main(argv: list[str] | None = None) -> None:
    """Entry point of a child process (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    stop = _StopRequest()

    def early_signal(signum: int, frame: FrameType | None) -> None:
        stop.request(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, early_signal)
    signal.signal(signal.SIGINT, early_signal)
    control = _take_control_socket()
    try:
        config = ChildConfig.from_json(args[0])
    except (IndexError, TypeError, ValueError) as exc:
        sys.stderr.write(f"troupe child: bad configuration {args!r}: {exc}\n")
        sys.exit(EXIT_CONFIG)
    from troupe.supervisors.process_logging import configure_logging

    if config.log_level:
        configure_logging(config.log_level, config.name)
    sys.path[:] = config.sys_path + [p for p in sys.path if p not in config.sys_path]
    if control is not None:
        watchdog = threading.Thread(
            target=_watch_parent,
            args=(control, stop, config.shutdown + config.kill_grace / 2),
            name="troupe-parent-watch",
            daemon=True,
        )
        watchdog.start()
    from troupe import run

    code: Any = run(_serve(config, control, stop))
    logging.shutdown()
    sys.exit(code)
