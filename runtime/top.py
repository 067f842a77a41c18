"""``troupe top``: a running tree's observer in the terminal (Textual; works over SSH).

It polls ``/observer.json`` (see :mod:`troupe.observer`) every ``interval``
seconds and shows the supervision tree across processes (state, restarts,
mailbox depth, messages/s and handler p99 of the actor's metrics group, loop
lag), bridges (lag, in flight, redeliveries, DLQ size), task queues and sagas.

Keys: ``s`` cycles the sort (tree order, messages/s, mailbox, p99, restarts),
``/`` filters actors by name (Enter applies, Escape clears), ``q`` quits.
Needs the ``observer`` extra (textual).
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, ClassVar

from .errors import TroupeError
from .observer import discovery_directory

SORTS = ("tree", "rate", "mailbox", "p99", "restarts")
_SORT_KEYS = {"rate": "rate", "mailbox": "mailbox_depth", "p99": "p99", "restarts": "restarts"}


class TopError(TroupeError):
    """The target names no running observer; the message says what to give instead."""


def observer_url(target: str) -> str:
    """The ``/observer.json`` URL for a URL (``/metrics``, ``/observer`` or the bare
    address) or the pid of a ``troupe run`` started with ``--metrics-port``.

    >>> observer_url("http://127.0.0.1:9464/metrics")
    'http://127.0.0.1:9464/observer.json'
    """
    if target.isdigit():
        path = discovery_directory() / f"{target}.json"
        try:
            url = str(json.loads(path.read_text())["url"])
        except (OSError, ValueError, KeyError) as exc:
            raise TopError(
                f"no observer for pid {target} ({path}: {exc}); start the tree with "
                "`troupe run --metrics-port PORT ...`, or give its URL"
            ) from None
        target = url
    if not target.startswith(("http://", "https://")):
        raise TopError(f"give a URL such as http://127.0.0.1:9464/metrics or a pid, not {target!r}")
    base = target.rstrip("/")
    for tail in ("/metrics", "/observer.json", "/observer"):
        if base.endswith(tail):
            base = base[: -len(tail)]
            break
    return base + "/observer.json"


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """One observer view (blocking)."""
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        data: dict[str, Any] = json.loads(reply.read())
    return data


def actor_rows(view: dict[str, Any], sort: str = "tree", match: str = "") -> list[dict[str, Any]]:
    """The tree flattened to rows (``depth`` for indenting), filtered by name and sorted.

    Process nodes stay in tree order above their actors when sorting by a column.

    >>> view = {"tree": [{"name": "p", "kind": "process", "children": [
    ...     {"name": "a", "rate": 1.0, "children": []},
    ...     {"name": "b", "rate": 5.0, "children": []}]}]}
    >>> [r["name"] for r in actor_rows(view, "rate")]
    ['p', 'b', 'a']
    """
    rows: list[dict[str, Any]] = []
    for process in view.get("tree") or []:
        actors = list(_walk(process.get("children") or [], 1))
        if process.get("hidden"):
            actors.append({"name": f"... {process['hidden']} more", "depth": 1})
        if match:
            actors = [a for a in actors if match.lower() in str(a["name"]).lower()]
        key = _SORT_KEYS.get(sort)
        if key is not None:
            actors.sort(key=lambda a: -(a.get(key) or 0))
        rows.append({**process, "depth": 0})
        rows.extend(actors)
    return rows


def _walk(nodes: list[dict[str, Any]], depth: int) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield {**node, "depth": depth}
        yield from _walk(node.get("children") or [], depth + 1)
        if node.get("hidden"):
            yield {"name": f"... {node['hidden']} more", "depth": depth + 1}


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def run_top(url: str, *, interval: float = 1.0) -> int:
    """Run the terminal UI on ``url`` until the user quits; the exit status."""
    app = top_app(url, interval=interval)
    app.run()
    return 0


def top_app(url: str, *, interval: float = 1.0) -> Any:
    """The Textual app (``app.run()``; tests drive it with ``app.run_test()``)."""
    try:
        from textual.app import App, ComposeResult
        from textual.binding import Binding
        from textual.widgets import DataTable, Footer, Header, Input, Static
    except ImportError as exc:
        raise TopError("troupe top needs textual: pip install 'troupe[observer]'") from exc

    class Top(App[None]):
        TITLE = "troupe top"
        CSS = """
        DataTable { height: auto; max-height: 60%; }
        #others { height: auto; }
        #filter { display: none; }
        #filter.shown { display: block; }
        """
        BINDINGS: ClassVar[list[Any]] = [
            Binding("q", "quit", "quit"),
            Binding("s", "sort", "sort"),
            Binding("slash", "filter", "filter"),
            Binding("escape", "clear_filter", "clear filter", show=False),
        ]

        def __init__(self) -> None:
            super().__init__()
            self.url = url
            self.interval = interval
            self.sort = "tree"
            self.match = ""
            self.view: dict[str, Any] = {}
            self.error: str | None = None

        def compose(self) -> ComposeResult:
            yield Header()
            yield Static("connecting...", id="status")
            yield Input(placeholder="filter actors by name", id="filter")
            yield DataTable(id="actors", cursor_type="row", zebra_stripes=True)
            yield Static("", id="others")
            yield Footer()

        def on_mount(self) -> None:
            table = self.query_one("#actors", DataTable)
            table.add_columns(
                "actor", "kind", "state", "restarts", "mailbox", "msg/s", "p99", "group"
            )
            self.sub_title = url
            self.set_interval(self.interval, self.refresh_view)
            self.call_later(self.refresh_view)

        async def refresh_view(self) -> None:
            try:
                self.view = await asyncio.to_thread(fetch, self.url)
                self.error = None
            except (OSError, ValueError, urllib.error.URLError) as exc:
                self.error = f"{self.url}: {exc}"
            self.render_view()

        def render_view(self) -> None:
            view = self.view
            status = self.query_one("#status", Static)
            procs = view.get("processes") or []
            lags = [(p.get("loop") or {}).get("lag", 0.0) for p in procs if p.get("loop")]
            line = (
                f"{len(procs)} processes  loop lag max {_ms(max(lags) if lags else None)}  "
                f"sort: {self.sort}" + (f"  filter: {self.match!r}" if self.match else "")
            )
            status.update(f"[red]{self.error}[/]\n{line}" if self.error else line)
            table = self.query_one("#actors", DataTable)
            table.clear()
            for row in actor_rows(view, self.sort, self.match):
                indent = "  " * row["depth"]
                name = row["name"] if row["depth"] else f"[b]{row['name']}[/b] pid {row.get('pid')}"
                table.add_row(
                    indent + name,
                    row.get("kind") or "",
                    row.get("state") or "",
                    _num(row.get("restarts")),
                    _num(row.get("mailbox_depth")),
                    _num(row.get("rate")),
                    _ms(row.get("p99")),
                    row.get("group") or "",
                )
            self.query_one("#others", Static).update("\n".join(self.other_lines()))

        def other_lines(self) -> Iterator[str]:
            view = self.view
            bridges = view.get("bridges") or []
            if bridges:
                yield "[b]bridges[/b]"
            for b in bridges:
                parts = ", ".join(
                    f"p{p['partition']} lag {_num(p.get('lag'))}" for p in b.get("partitions") or []
                )
                yield (
                    f"  {b['name']} ({b.get('kind')}, {b.get('broker')}) stream {b.get('stream')}"
                    f"  lag {_num(b.get('lag'))}  in flight {_num(b.get('in_flight'))}"
                    f"  redelivered {_num(b.get('redelivered'))}  DLQ {_num(b.get('dlq_size'))}"
                    f"  {'connected' if b.get('connected') else '[red]disconnected[/]'}"
                    + (f"  [{parts}]" if parts else "")
                )
            tasks = view.get("tasks") or []
            if tasks:
                yield "[b]task queues[/b]"
            for q in tasks:
                yield (
                    f"  {q['queue']}  size {_num(q.get('size'))}  scheduled "
                    f"{_num(q.get('scheduled'))}  retrying {_num(q.get('retrying'))}  "
                    f"dead {_num(q.get('dead'))}"
                )
            sagas = view.get("sagas") or []
            if sagas:
                yield "[b]sagas[/b]"
            for s in sagas:
                yield (
                    f"  {s['name']}  running {_num(s.get('running'))}  compensating "
                    f"{_num(s.get('compensating'))}  "
                    f"needs attention {_num(s.get('needs_attention'))}"
                )

        def action_sort(self) -> None:
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
            self.render_view()

        def action_filter(self) -> None:
            box = self.query_one("#filter", Input)
            box.add_class("shown")
            box.focus()

        def action_clear_filter(self) -> None:
            box = self.query_one("#filter", Input)
            box.value = ""
            box.remove_class("shown")
            self.match = ""
            self.query_one("#actors", DataTable).focus()
            self.render_view()

        def on_input_submitted(self, event: Input.Submitted) -> None:
            self.match = event.value.strip().lstrip("/")  # the key that opened the box
            event.input.remove_class("shown")
            self.query_one("#actors", DataTable).focus()
            self.render_view()

    return Top()


__all__ = ["SORTS", "TopError", "actor_rows", "fetch", "observer_url", "run_top", "top_app"]
