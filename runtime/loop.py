"""Event-loop selection: uvloop when it is installed, the stock loop otherwise; and
``run``, which also sizes the garbage collector's young generation for actor work."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import ConfigError, require_int

T = TypeVar("T")

#: The cyclic collector's first-generation threshold under :func:`run` (CPython's default
#: is 700; 3.13 raised it to 2000). A bridge keeps up to two pages of messages in flight,
#: a few tracked objects each (up to ~4,000 at pages of 500): a young collection should
#: come less often than that, or it catches them alive and promotes them, and the full
#: collections that follow scan the whole heap.
GC_THRESHOLD = 10_000


def uvloop_available() -> bool:
    """True when uvloop can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(
    main: Coroutine[Any, Any, T],
    *,
    debug: bool | None = None,
    gc_threshold: int | None = GC_THRESHOLD,
) -> T:
    """Like ``asyncio.run``, on the loop :func:`new_event_loop` picks.

    While ``main`` runs, the collector's first-generation threshold is at least
    ``gc_threshold`` (``GC_THRESHOLD`` by default; the earlier thresholds come back when
    ``run`` returns): messages in flight then die young instead of being promoted to the
    old generations and scanned again by full collections. A threshold the process set
    higher, or 0 (automatic collection off), is kept; ``gc_threshold=None`` leaves the
    collector alone (the collector is the process's: an application that tunes it itself
    passes None).
    """
    previous = gc.get_threshold()
    if gc_threshold is not None:
        try:
            require_int("gc_threshold", gc_threshold, 1)
        except ConfigError:
            main.close()  # never run: no "never awaited" warning on top of the error
            raise
        if 0 < previous[0] < gc_threshold:
            gc.set_threshold(gc_threshold, *previous[1:])
    try:
        with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
            return runner.run(main)
    finally:
        if gc.get_threshold()[0] == gc_threshold != previous[0]:  # not changed meanwhile
            gc.set_threshold(*previous)
