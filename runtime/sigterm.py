"""SIGTERM drains a process as Ctrl-C does, while a :class:`~troupe.SyncActorSystem` is open.

docker, systemd and Kubernetes stop a process with SIGTERM, whose default action ends
it at once: a module-level ``SyncActorSystem`` (drained at interpreter exit) would lose
what is queued and never run ``on_stop``. While one is open, SIGTERM raises
``SystemExit(143)`` in the main thread instead, as Ctrl-C raises KeyboardInterrupt:
``finally`` blocks, ``with`` exits and the drain at exit run, then the process exits
with status 143 (128 + SIGTERM, what a shell reports for a process SIGTERM ended).

The handler is installed only from the main thread (where Python runs signal handlers)
and only while SIGTERM has its default action: a handler the application installed is
left alone. When the last system closes, the default action is restored (if the handler
is still this one). A second SIGTERM, or one that arrives while a system shuts down,
ends the process at once.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

#: The exit status after a drain that SIGTERM started.
EXIT_STATUS = 128 + signal.SIGTERM

_open: set[object] = set()  # systems that drain on SIGTERM


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process at once
    if not _open:  # every system closed off the main thread, which could not restore
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise SystemExit(EXIT_STATUS)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def hold(owner: object) -> bool:
    """Make SIGTERM drain while ``owner`` is open; True when it will (see the module doc)."""
    if not _on_main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    elif current is not _on_sigterm:
        return False  # the application's own handler
    _open.add(owner)
    return True


def release(owner: object) -> None:
    """``owner`` closes: the last one restores SIGTERM's default action."""
    _open.discard(owner)
    if _open or not _on_main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def installed() -> bool:
    """True while SIGTERM drains the open systems."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm
