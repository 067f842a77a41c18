"""Two ``troupe run`` trees (two "hosts") joined into one cluster through a broker.

Real OS processes on a real server the session starts: each tree is ``python -m
troupe run ... --broker URL --cluster NAME --export ...``; the test process joins the
same cluster as a third member. Shown: the membership lists both trees; an ask from
one tree to a name the other exports; kill -9 of every process of one tree, after
which the other tree's ``watch`` reports it gone (lease expired) and the membership
drops it. Bad cluster settings fail ``troupe run`` at start, naming the flag.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.actors.cluster import ClusterSettings, join

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = "0.3"


@pytest.fixture(params=["redis", "rabbitmq", "kafka"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def troupe_run(url: str, cluster: str, target: str, *flags: str) -> subprocess.Popen[bytes]:
    """``troupe run TARGET --broker URL --cluster CLUSTER ...`` in the repository root."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "troupe",
            "run",
            target,
            "--broker",
            url,
            "--cluster",
            cluster,
            "--heartbeat",
            HEARTBEAT,
            "--log-level",
            "warning",
            *flags,
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def trees(url: str) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    left = troupe_run(
        url, "shop", "tests.brokers.cluster_trees:left", "--export", "left.status=status"
    )
    right = troupe_run(
        url, "shop", "tests.brokers.cluster_trees:right", "--export", "right.echo=echo"
    )
    try:
        yield left, right
    finally:
        stop(left)
        stop(right)


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    async with ActorSystem("observer") as made:
        yield made


async def test_two_trees_form_one_system_and_see_a_killed_tree_gone(
    url: str,
    trees: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]],
    system: ActorSystem,
) -> None:
    left, right = trees
    cluster = await join(system, ClusterSettings(url, "shop", heartbeat=float(HEARTBEAT)))
    try:
        # the membership (leases on the broker) shows both trees and this process
        def everyone() -> bool:
            ids = [m.id for m in cluster.members()]
            return any(i.startswith("left-0-") for i in ids) and any(
                i.startswith("right-0-") for i in ids
            )

        await eventually(everyone, timeout=60)
        status = cluster.remote("left.status")
        seen: dict[str, Any] = {}

        async def left_sees_everyone() -> bool:
            # each member reads the leases on its own heartbeat: left's view may lag ours
            seen.update(await status.ask({"op": "status"}, timeout=10))
            members = seen["members"]
            return any(m.startswith("right-0-") for m in members) and (
                cluster.member_id in members
            )

        await eventually(left_sees_everyone, timeout=30, interval=0.2)

        # left asks a name the other tree exports, through the broker
        answer = await status.ask({"op": "call"}, timeout=20)
        assert answer["tree"] == "right" and answer["got"] == {"from": "left"}
        right_child = int(answer["pid"])
        assert right_child != right.pid and right_child != seen["pid"]

        # left watches right.echo; then every process of the right tree dies at once
        watching = await status.ask({"op": "watch"}, timeout=10)
        assert watching["watching"] and watching["right_gone"] is None
        for pid in (right.pid, right_child):
            os.kill(pid, signal.SIGKILL)
        right.wait(10)

        async def left_saw_right_gone() -> bool:
            now = await status.ask({"op": "status"}, timeout=10)
            return now["right_gone"] == "LeaseExpired" and not any(
                m.startswith("right-0-") for m in now["members"]
            )

        await eventually(left_saw_right_gone, timeout=30, interval=0.2)

        # this process reads the leases on its own heartbeat too: its view may lag left's
        def right_gone_here() -> bool:
            return not any(m.id.startswith("right-0-") for m in cluster.members())

        await eventually(right_gone_here, timeout=30, interval=0.2)
        ids = [m.id for m in cluster.members()]
        assert any(i.startswith("left-0-") for i in ids), ids
        assert left.poll() is None  # the left tree runs on
    finally:
        await cluster.close()


def test_bad_cluster_settings_fail_at_start_naming_the_flag(redis_url: str) -> None:
    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "troupe", "run", "tests.brokers.cluster_trees:left", *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad_url = run("--broker", "nats://127.0.0.1:4222")
    assert bad_url.returncode == 2 and "--broker" in bad_url.stderr, bad_url.stderr
    memory = run("--broker", "memory://")
    assert memory.returncode == 2 and "--broker" in memory.stderr, memory.stderr
    bad_name = run("--broker", redis_url, "--cluster", "my shop")
    assert bad_name.returncode == 2 and "--cluster" in bad_name.stderr, bad_name.stderr
    bad_export = run("--broker", redis_url, "--export", "left status")
    assert bad_export.returncode == 2 and "--export" in bad_export.stderr, bad_export.stderr
    no_broker = run("--export", "left.status=status")
    assert no_broker.returncode == 2 and "--broker" in no_broker.stderr, no_broker.stderr
    down = run("--broker", "redis://127.0.0.1:1/0")
    assert down.returncode == 2 and "--broker" in down.stderr, down.stderr
    assert "cannot connect" in down.stderr


async def test_demo_split_runs_the_saga_steps_in_a_second_tree(url: str) -> None:
    """``troupe demo --broker URL --split``: orders and saga here, the steps and their
    ledgers in a ``troupe run`` tree; every order settles, stock and money balance
    (checked in the steps tree), injected crashes there are retried through the broker."""
    from troupe.examples.orders.demo import DemoOptions, run_demo

    options = DemoOptions(
        orders=120, broker=url, rate=0, metrics_port=None, progress=False, seed=11, split=True
    )
    result = await run_demo(options, err=io.StringIO())
    assert result.ok, result
    summary = result.summary
    assert summary["completed"] + summary["compensated"] == 120
    assert summary["injected_crashes"] > 0  # counted by the steps tree's ledgers
    assert summary["restarts"] >= summary["injected_crashes"]  # restarts there, reported here
    assert summary["step_retries"] >= summary["injected_crashes"]


def test_demo_split_needs_a_shared_broker() -> None:
    from troupe.errors import ConfigError
    from troupe.examples.orders.demo import DemoOptions

    with pytest.raises(ConfigError, match="'split'"):
        DemoOptions(split=True)
