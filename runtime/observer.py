"""The observer: a running system as JSON, a web page, ``/healthz`` and ``/readyz``.

An :class:`Observer` is a WSGI app mounted beside ``/metrics`` (same address,
127.0.0.1 unless configured) that serves

- ``GET /observer``: the web page (tree, sparklines of rates, bridges with their
  dead letters, task queues with dead tasks, sagas), refreshed every second;
- ``GET /observer.json``: the same data (what ``troupe top`` reads);
- ``GET /healthz``: 200 while every process's event loop answers within
  ``health_bound`` seconds, else 503 naming the process (a liveness probe);
- ``GET /readyz``: 200 while every bridge is connected, no supervisor gave up
  and every child process is up, else 503 with the problems (a readiness probe);
- ``POST /observer/actions``: ``{"process", "action", "params"}``; refused with
  403 unless made with ``allow_actions=True`` and 401 without
  ``Authorization: Bearer <token>``.

Data is gathered only while requests come (at most twice a second, whoever
asks); nothing runs in the observed processes otherwise. Rates (messages/s)
and handler p99 are per metrics group over the time between two gatherings.
A :class:`Source` says where the data comes from: :class:`SystemSource` for
systems of this process; the process-tree source lives in
:mod:`troupe.supervisors.process_observer`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import observe
from .errors import ConfigError
from .metrics.stats import BUCKETS

if TYPE_CHECKING:
    from .metrics.export import MetricsServer
    from .system import ActorSystem

logger = logging.getLogger(__name__)

TOKEN_ENV = "TROUPE_OBSERVER_TOKEN"
PATHS = ("/observer", "/observer.json", "/healthz", "/readyz")
HISTORY = 60  # points of each sparkline (one per gathering, about a second apart)
MIN_INTERVAL = 0.5  # seconds between two gatherings, however many clients poll
_CORE_KEYS = frozenset({"system", "pid", "time", "loop", "counts", "groups", "tree"})


@dataclass
class ProcessView:
    """One observed process: its supervisor's view and its snapshot (None when down)."""

    name: str
    pid: int | None
    state: str  # "running" for a live system; a ChildState value in a process tree
    restarts: int = 0
    snapshot: dict[str, Any] | None = None
    error: str | None = None


class Source(Protocol):
    """Where an observer's data comes from; every method may block up to ``timeout``."""

    def collect(self, timeout: float) -> list[ProcessView]:
        """Every process with its snapshot."""

    def ping(self, timeout: float) -> list[str]:
        """Processes whose event loop did not answer within ``timeout`` (empty: healthy)."""

    def ready(self, timeout: float) -> list[str]:
        """What keeps the tree from being ready (empty: ready)."""

    def act(self, process: str, action: str, params: Mapping[str, Any], timeout: float) -> Any:
        """Run ``action`` in ``process``; raises :class:`~troupe.observe.ActionError`."""


class SystemSource:
    """The systems of this process (an embedded ``ActorSystem(metrics_port=...)``)."""

    def __init__(self, systems: Iterable[ActorSystem] = ()) -> None:
        self.systems: list[ActorSystem] = list(systems)

    def add(self, system: ActorSystem) -> None:
        """Observe ``system`` too."""
        self.systems.append(system)

    def _live(self) -> list[ActorSystem]:
        return [s for s in self.systems if s.is_running]

    def collect(self, timeout: float) -> list[ProcessView]:
        views = []
        for system in self._live():
            view = ProcessView(system.name, os.getpid(), "running")
            try:
                view.snapshot = observe.run_on_loop(
                    system, partial(observe.snapshot, system), timeout
                )
            except TimeoutError:
                view.error = f"event loop did not answer within {timeout} s"
            views.append(view)
        return views

    def ping(self, timeout: float) -> list[str]:
        problems = []
        for system in self._live():
            if not ping_loop(system, timeout):
                problems.append(f"{system.name}: event loop blocked for more than {timeout} s")
        return problems

    def ready(self, timeout: float) -> list[str]:
        problems: list[str] = []
        for system in self.systems:
            if not system.is_running:
                problems.append(f"{system.name}: not running")
                continue
            try:
                problems.extend(
                    observe.run_on_loop(system, partial(observe.readiness, system), timeout)
                )
            except TimeoutError:
                problems.append(f"{system.name}: event loop did not answer within {timeout} s")
        return problems

    def act(self, process: str, action: str, params: Mapping[str, Any], timeout: float) -> Any:
        for system in self._live():
            if system.name == process:
                return observe.run_on_loop(
                    system, partial(observe.act, system, action, params), timeout
                )
        raise observe.ActionError(f"no running system named {process!r}")


def ping_loop(system: ActorSystem, timeout: float) -> bool:
    """True when ``system``'s loop runs a callback within ``timeout`` seconds."""
    done = threading.Event()
    try:
        system.loop.call_soon_threadsafe(done.set)
    except RuntimeError:  # the loop is closed
        return False
    return done.wait(timeout)


def p99(buckets: Sequence[int]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile (None: no samples;
    ``inf`` past the last bound).

    >>> p99([0, 99, 1] + [0] * 17)
    0.0001
    """
    total = sum(buckets)
    if total <= 0:
        return None
    wanted = 0.99 * total
    seen = 0
    for bound, count in zip((*BUCKETS, float("inf")), buckets, strict=False):
        seen += count
        if seen >= wanted:
            return bound
    return float("inf")


class _Rates:
    """Per metrics group: messages/s and handler p99 between two gatherings, and history."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, int, list[int]]] = {}
        self.history: dict[str, deque[float]] = {}

    def update(self, views: list[ProcessView], now: float) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        seen: set[tuple[str, str]] = set()
        for view in views:
            groups = (view.snapshot or {}).get("groups") or {}
            for label, g in groups.items():
                key = (f"{view.name}:{view.pid}", label)
                seen.add(key)
                before = self._last.get(key)
                self._last[key] = (now, g["handled"], g["buckets"])
                out = merged.setdefault(
                    label,
                    {
                        "group": label,
                        "rate": 0.0,
                        "handled": 0,
                        "failed": 0,
                        "depth": 0,
                        "live": 0,
                        "restarts": 0,
                        "delta": [0] * len(g["buckets"]),
                    },
                )
                for field in ("handled", "failed", "depth", "live", "restarts"):
                    out[field] += g[field]
                if before is not None and now > before[0]:
                    out["rate"] += max(0, g["handled"] - before[1]) / (now - before[0])
                    out["delta"] = [
                        d + max(0, a - b)
                        for d, a, b in zip(out["delta"], g["buckets"], before[2], strict=False)
                    ]
        for key in set(self._last) - seen:
            del self._last[key]
        for label, out in merged.items():
            out["p99"] = p99(out.pop("delta"))
            history = self.history.setdefault(label, deque(maxlen=HISTORY))
            history.append(round(out["rate"], 3))
            out["history"] = list(history)
        for label in set(self.history) - set(merged):
            del self.history[label]
        return merged


def _annotate(nodes: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> None:
    for node in nodes:
        group = groups.get(node.get("group") or "")
        node["rate"] = group["rate"] if group else None
        node["p99"] = group["p99"] if group else None
        _annotate(node.get("children") or [], groups)


class Observer:
    """The observer's data and its HTTP endpoints (see the module docstring).

    ``health_bound``: seconds a loop may take to answer before ``/healthz`` says
    503. ``allow_actions`` needs a ``token`` (a ConfigError names it otherwise).
    """

    def __init__(
        self,
        source: Source,
        *,
        allow_actions: bool = False,
        token: str | None = None,
        health_bound: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        if allow_actions and not token:
            raise ConfigError("token", "actions need a token (set TROUPE_OBSERVER_TOKEN)")
        if not health_bound > 0:
            raise ConfigError("health_bound", f"must be positive seconds, got {health_bound!r}")
        self.source = source
        self.allow_actions = allow_actions
        self._token = token or ""
        self.health_bound = float(health_bound)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._rates = _Rates()
        self._view: dict[str, Any] | None = None
        self._view_at = 0.0

    # -- data ---------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The whole picture (what ``/observer.json`` returns); gathered at most every
        half second, whoever asks."""
        with self._lock:
            now = time.monotonic()
            if self._view is None or now - self._view_at >= MIN_INTERVAL:
                self._view = self._gather(now)
                self._view_at = now
            return self._view

    def _gather(self, now: float) -> dict[str, Any]:
        views = self.source.collect(self.timeout)
        groups = self._rates.update(views, now)
        processes: list[dict[str, Any]] = []
        tree: list[dict[str, Any]] = []
        extra: dict[str, list[Any]] = {}
        for view in views:
            snap = view.snapshot or {}
            processes.append(
                {
                    "name": view.name,
                    "pid": view.pid,
                    "state": view.state,
                    "restarts": view.restarts,
                    "error": view.error,
                    "loop": snap.get("loop"),
                    "counts": snap.get("counts"),
                }
            )
            section = snap.get("tree")
            found = section.get("nodes") if isinstance(section, dict) else None
            nodes = [dict(n) for n in found] if isinstance(found, list) else []
            _annotate(nodes, groups)
            tree.append(
                {
                    "name": view.name,
                    "kind": "process",
                    "state": view.state,
                    "pid": view.pid,
                    "restarts": view.restarts,
                    "mailbox_depth": sum(n.get("mailbox_depth", 0) for n in nodes),
                    "children": nodes,
                    "hidden": section.get("hidden", 0) if isinstance(section, dict) else 0,
                }
            )
            for key, value in snap.items():
                if key in _CORE_KEYS or not isinstance(value, list):
                    continue
                rows = extra.setdefault(key, [])
                for row in value:
                    if isinstance(row, dict):
                        rows.append({"process": view.name, **row})
        for key, rows in extra.items():
            extra[key] = _dedupe(rows)
        return {
            "time": time.time(),
            "actions": self.allow_actions,
            "processes": processes,
            "tree": tree,
            "groups": sorted(groups.values(), key=lambda g: g["group"]),
            **extra,
        }

    def health(self) -> list[str]:
        """What makes ``/healthz`` fail (empty: healthy)."""
        return self.source.ping(self.health_bound)

    def readiness(self) -> list[str]:
        """What makes ``/readyz`` fail (empty: ready)."""
        return self.source.ready(self.timeout)

    def act(self, process: str, action: str, params: Mapping[str, Any]) -> Any:
        """Run an action (no flag or token check: the HTTP side does that)."""
        with self._lock:
            self._view = None  # the next view shows the action's effect
        return self.source.act(process, action, params, self.timeout)

    # -- HTTP ---------------------------------------------------------------------------

    def mount(self, server: MetricsServer) -> None:
        """Serve this observer's paths on ``server`` (a ``/metrics`` endpoint)."""
        for path in PATHS:
            server.mount(path, self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO") or "/")
        method = str(environ.get("REQUEST_METHOD") or "GET")
        try:
            if path == "/observer/actions":
                if method != "POST":
                    return _reply(start_response, 405, {"error": "POST an action"})
                return self._action(environ, start_response)
            if method not in ("GET", "HEAD"):
                return _reply(start_response, 405, {"error": f"{method} is not allowed here"})
            if path in ("/observer", "/observer/"):
                from .observer_page import PAGE

                return _send(start_response, 200, "text/html; charset=utf-8", PAGE.encode())
            if path == "/observer.json":
                return _reply(start_response, 200, self.view())
            if path == "/healthz":
                problems = self.health()
                return _reply(
                    start_response,
                    503 if problems else 200,
                    {"status": "unhealthy" if problems else "ok", "problems": problems},
                )
            if path == "/readyz":
                problems = self.readiness()
                return _reply(
                    start_response,
                    503 if problems else 200,
                    {"status": "not ready" if problems else "ready", "problems": problems},
                )
        except Exception as exc:
            logger.exception("observer request %s failed", path)
            return _reply(start_response, 500, {"error": f"{type(exc).__name__}: {exc}"})
        return _reply(start_response, 404, {"error": f"no page {path}"})

    def _action(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.allow_actions:
            return _reply(
                start_response, 403, {"error": "actions are off: start with --allow-actions"}
            )
        given = str(environ.get("HTTP_AUTHORIZATION") or "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(
            given[7:].strip().encode(), self._token.encode()
        ):
            return _reply(start_response, 401, {"error": "a valid 'Authorization: Bearer' token"})
        if "json" not in str(environ.get("CONTENT_TYPE") or ""):
            return _reply(start_response, 415, {"error": "send application/json"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(min(length, 1 << 20)) or b"{}")
            process, action = str(body["process"]), str(body["action"])
            params = body.get("params") or {}
            if not isinstance(params, dict):
                raise TypeError("params must be an object")
        except (ValueError, KeyError, TypeError) as exc:
            return _reply(
                start_response,
                400,
                {"error": f"send {{'process', 'action', 'params'}} as JSON ({exc})"},
            )
        try:
            result = self.act(process, action, params)
        except observe.ActionError as exc:
            return _reply(start_response, 409, {"error": str(exc)})
        except TimeoutError:
            return _reply(start_response, 504, {"error": f"{process} did not answer in time"})
        logger.warning("observer action %s in %s done: %s", action, process, result)
        return _reply(start_response, 200, {"result": result})


def _dedupe(rows: list[Any]) -> list[Any]:
    """Rows that carry a ``dedupe`` key (deployment-wide data every process reports, such
    as task queues) appear once."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key = row.get("dedupe") if isinstance(row, dict) else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(row)
    return out


def _reply(start_response: Callable[..., Any], status: int, data: Any) -> list[bytes]:
    body = json.dumps(_finite(data), default=str, allow_nan=False, separators=(",", ":"))
    return _send(start_response, status, "application/json", body.encode())


def _finite(value: Any) -> Any:
    """JSON has no infinity: ``inf`` becomes null (an unbounded p99 shows as "> 60 s")."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    415: "Unsupported Media Type",
    400: "Bad Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _send(start_response: Callable[..., Any], status: int, kind: str, body: bytes) -> list[bytes]:
    start_response(
        f"{status} {_REASONS.get(status, '')}",
        [("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
    )
    return [body]


def discovery_directory() -> Path:
    """Where running trees leave ``<pid>.json`` naming their observer URL (and the token when
    actions are on), readable by this user only: what ``troupe top PID`` reads."""
    return Path(tempfile.gettempdir()) / f"troupe-observer-{os.getuid()}"


def token_from_env() -> str | None:
    """The actions token from ``TROUPE_OBSERVER_TOKEN``, if set."""
    return os.environ.get(TOKEN_ENV) or None


__all__ = [
    "PATHS",
    "TOKEN_ENV",
    "Observer",
    "ProcessView",
    "Source",
    "SystemSource",
    "discovery_directory",
    "ping_loop",
    "token_from_env",
]
