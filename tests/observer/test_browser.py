"""The observer page in a real browser: headless Chromium (Debian's) driven by Playwright.

Playwright's own browser download is not used: ``executable_path`` points at the
``chromium`` binary that scripts/test installs from the Debian package.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from observer_helpers import TOKEN, post, running_tree  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT = 30_000  # ms: a loaded machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing: scripts/test installs the Debian package", False)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    try:
        yield page
    finally:
        context.close()


def test_the_page_shows_a_live_tree_and_a_dlq_requeue_round_trips(page: Page) -> None:
    with running_tree("--allow-actions") as tree:
        page.goto(tree.base + "/observer")
        rows = page.locator("#tree tbody tr")
        expect(rows.filter(has_text="worker-a")).to_have_count(2)
        expect(page.locator("#tree tr.proc")).to_have_count(2)
        victim = tree.view()["tree"][0]
        proc = page.locator(f'#tree tr.proc[data-name="{victim["name"]}"]')
        expect(proc).to_contain_text(f"pid {victim['pid']}")
        os.kill(victim["pid"], signal.SIGKILL)
        # the tree changes: the killed process comes back with another pid and a restart
        expect(proc).not_to_contain_text(f"pid {victim['pid']}")
        expect(proc.locator("td").nth(3)).to_have_text("1")
        expect(rows.filter(has_text="worker-a")).to_have_count(2)
        # each process dead-lettered its poison message; requeue one from the page
        dead = page.locator("#bridges tr.dead")
        expect(dead).to_have_count(2)
        expect(dead.first).to_contain_text("poison pill")
        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        dead.first.get_by_role("button", name="requeue").click()
        expect(page.locator("#msg")).to_contain_text("200: requeued")
        expect(dead).to_have_count(1)
        # handled this time: acked by the bridge, not dead-lettered again
        bridges = tree.view()["bridges"]
        assert sorted(b["dlq_size"] for b in bridges) == [0, 1]
        done = next(b for b in bridges if b["dlq_size"] == 0)
        assert done["acked"] >= 2


def test_actions_are_refused_without_the_token_and_without_the_flag(page: Page) -> None:
    with running_tree("--allow-actions", processes=1) as tree:
        page.goto(tree.base + "/observer")
        restart = page.locator('#tree tr[data-name="worker-a"] button', has_text="restart")
        restart.click()  # no token typed in
        expect(page.locator("#msg")).to_contain_text("401")
        page.fill("#token", "not-the-token")
        page.dispatch_event("#token", "change")
        restart.click()
        expect(page.locator("#msg")).to_contain_text("401")
        view = tree.view()
        assert all(n["restarts"] == 0 for p in view["tree"] for n in p["children"][0]["children"])
    with running_tree(processes=1) as tree:
        page.goto(tree.base + "/observer")
        expect(page.locator("#tree tbody tr").filter(has_text="worker-a")).to_have_count(1)
        expect(page.locator("#tree button")).to_have_count(0)  # no action buttons
        expect(page.locator("#auth")).to_be_hidden()
        process = tree.view()["tree"][0]["name"]
        body = {"process": process, "action": "restart", "params": {"actor": "worker-a"}}
        status, reply = post(tree.base + "/observer/actions", body, TOKEN)
        assert status == 403 and "--allow-actions" in reply["error"]
