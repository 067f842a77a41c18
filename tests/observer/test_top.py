"""``troupe top`` driven headless by Textual's pilot against a real ``troupe run``."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from observer_helpers import running_tree  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from troupe.top import observer_url, top_app  # noqa: E402


def cells(app: Any) -> list[list[str]]:
    table = app.query_one("#actors", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def until(pilot: Any, check: Any, timeout: float = 30.0, message: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        shown = message() if message is not None else cells(pilot.app)
        assert time.monotonic() < deadline, f"not shown in time: {shown}"
        await pilot.pause(0.2)


async def test_top_shows_the_tree_of_a_running_tree_and_updates_after_a_kill() -> None:
    with running_tree() as tree:
        view = tree.view()
        victim = view["tree"][0]
        app = top_app(observer_url(tree.base + "/metrics"), interval=0.3)
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: any("worker-a" in row[0] for row in cells(app)))
            names = [row[0].strip() for row in cells(app)]
            assert "workers" in names and "orders-bridge" in names
            assert any(name.endswith(f"pid {victim['pid']}") for name in names)
            os.kill(victim["pid"], signal.SIGKILL)
            # the killed process shows its restart and new pid
            await until(
                pilot,
                lambda: any(
                    victim["name"] in row[0]
                    and not row[0].endswith((f"pid {victim['pid']}", "pid None"))
                    and row[3] == "1"
                    for row in cells(app)
                ),
            )
            # sort and filter keys
            await pilot.press("slash")
            await pilot.press(*"worker", "minus", "b")
            await pilot.press("enter")
            await until(
                pilot, lambda: app.match == "worker-b", message=lambda: (app.match, app.focused)
            )
            actors = [row[0].strip() for row in cells(app) if "pid" not in row[0]]
            assert actors and all(a == "worker-b" for a in actors)
            await pilot.press("s")
            assert app.sort == "rate"
            await until(pilot, lambda: any("worker-a" in row[0] for row in cells(app)) is False)
