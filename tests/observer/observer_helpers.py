"""Run an observed tree with ``troupe run`` and talk to its observer over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from troupe.observer import discovery_directory

HERE = Path(__file__).resolve().parent
TOKEN = "observer-test-token"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` (generous: loaded CI)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {check}")
        time.sleep(every)


def get(url: str) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def post(url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) of a JSON POST with an optional bearer token."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def actor_names(view: dict[str, Any]) -> set[str]:
    """Every actor name in a view's tree (processes excluded)."""
    names: set[str] = set()

    def walk(nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            names.add(node["name"])
            walk(node.get("children") or [])

    for process in view["tree"]:
        walk(process["children"])
    return names


class Tree:
    """A ``troupe run`` of ``observer_targets:build``; ``base`` is its observer's address."""

    def __init__(self, process: subprocess.Popen[bytes], base: str) -> None:
        self.process = process
        self.base = base

    def view(self) -> dict[str, Any]:
        status, data = get(self.base + "/observer.json")
        assert status == 200, data
        return dict(data)


@contextlib.contextmanager
def running_tree(*options: str, processes: int = 2) -> Iterator[Tree]:
    """Start the tree with ``--metrics-port 0`` and wait until every child answers."""
    env = {**os.environ, "TROUPE_OBSERVER_TOKEN": TOKEN, "PYTHONPATH": str(HERE)}
    root = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "troupe",
            "run",
            "observer_targets:build",
            f"--processes={processes}",
            "--metrics-port=0",
            "--log-level=WARNING",
            *options,
        ],
        cwd=HERE,
        env=env,
    )
    found = discovery_directory() / f"{root.pid}.json"
    try:
        url = wait_for(lambda: found.exists() and json.loads(found.read_text())["url"])
        tree = Tree(root, url.rsplit("/", 1)[0])
        wait_for(lambda: sum(1 for p in tree.view()["tree"] if p["children"]) == processes)
        yield tree
    finally:
        root.send_signal(signal.SIGTERM)
        try:
            root.wait(30)
        except subprocess.TimeoutExpired:
            root.kill()
            root.wait()
