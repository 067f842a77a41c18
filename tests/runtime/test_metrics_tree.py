"""One /metrics endpoint for a tree of real OS processes.

Children write their counters to files in the endpoint's tree directory; the
endpoint sums them with the root's own. A child killed with SIGKILL keeps what
it counted, and its restarted successor adds to it — nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # children import the targets from here

from metrics_tree_targets import MESSAGES  # noqa: E402

from tests.helpers import eventually  # noqa: E402
from troupe import ActorSystem  # noqa: E402
from troupe.metrics import MetricsEndpoint  # noqa: E402
from troupe.supervisors import Backoff, ChildState, ProcessSpec, ProcessSupervisor  # noqa: E402
from troupe.supervisors.process_metrics import TreeMetricsHooks  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def handled(samples: Samples) -> float:
    return value(samples, "troupe_messages_total", actor="counter", outcome="ok")


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    served = MetricsEndpoint(port=0)
    yield served
    served.close()


def start_plain_child(endpoint: MetricsEndpoint, name: str) -> subprocess.Popen[str]:
    env = {**os.environ, **endpoint.environment()}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-m", "metrics_tree_targets", name],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "handled"
    return child


async def test_plain_processes_report_through_one_endpoint(endpoint: MetricsEndpoint) -> None:
    """The aggregation itself, with two spawned processes and the root's own system."""
    children: list[subprocess.Popen[str]] = []
    try:
        async with ActorSystem("root") as root:
            endpoint.add_system(root.metrics)  # type: ignore[arg-type]
            from metrics_tree_targets import build

            build(root)  # the root handles MESSAGES too
            children = [
                await asyncio.to_thread(start_plain_child, endpoint, name)
                for name in ("plain-a", "plain-b")
            ]
            await eventually(
                lambda: handled(scrape(endpoint.url)) == 3 * MESSAGES, timeout=30, in_thread=True
            )
            samples = scrape(endpoint.url)
            for name in ("root", "plain-a", "plain-b"):
                assert value(samples, "troupe_process_up", process=name) == 1

            children[0].send_signal(signal.SIGKILL)
            await asyncio.to_thread(children[0].wait)
            samples = scrape(endpoint.url)
            assert handled(samples) == 3 * MESSAGES  # the dead child's counts stay
            assert value(samples, "troupe_process_up", process="plain-a") == 0

            children[0] = await asyncio.to_thread(start_plain_child, endpoint, "plain-a")
            samples = scrape(endpoint.url)
            assert handled(samples) == 4 * MESSAGES  # added, not reset and not doubled
            assert value(samples, "troupe_process_up", process="plain-a") == 1
            assert value(samples, "troupe_process_starts_total", process="plain-a") == 2
            assert value(samples, "troupe_process_restarts_total", process="plain-a") == 1
            hist = value(samples, "troupe_handler_seconds_count", actor="counter")
            assert hist == 4 * MESSAGES
    finally:
        for child in children:
            child.kill()
            child.wait()


async def test_process_tree_endpoint_survives_a_kill_and_restart(
    endpoint: MetricsEndpoint,
) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("metrics_tree_targets:build", count=2, shutdown=2.0)],
        backoff=Backoff(initial=0.01, maximum=0.05, jitter="full"),
        max_restarts=10,
        within=60,
        hooks=[TreeMetricsHooks(endpoint)],
    )
    await tree.start()
    try:
        await eventually(
            lambda: handled(scrape(endpoint.url)) == 2 * MESSAGES, timeout=30, in_thread=True
        )
        # gauges come from each live child's sampler (once a second)
        await eventually(
            lambda: value(scrape(endpoint.url), "troupe_actors", actor="counter") == 2,
            timeout=30,
            in_thread=True,
        )
        samples = scrape(endpoint.url)
        assert value(samples, "troupe_process_up", process="build-0") == 1
        assert value(samples, "troupe_process_up", process="build-1") == 1

        victim: Any = tree.status()[0].pid
        os.kill(victim, signal.SIGKILL)

        def restarted() -> bool:
            status = tree.status()[0]
            return status.state is ChildState.RUNNING and status.pid != victim

        await eventually(restarted, timeout=30, in_thread=True)
        await eventually(
            lambda: handled(scrape(endpoint.url)) == 3 * MESSAGES, timeout=30, in_thread=True
        )
        await asyncio.sleep(0.3)  # nothing more arrives: the restart was not double-counted
        samples = scrape(endpoint.url)
        assert handled(samples) == 3 * MESSAGES
        assert value(samples, "troupe_handler_seconds_count", actor="counter") == 3 * MESSAGES
        assert value(samples, "troupe_process_restarts_total", process="build-0") == 1
        assert value(samples, "troupe_process_restarts_total", process="build-1") == 0
        assert value(samples, "troupe_process_starts_total", process="build-0") == 2
        assert value(samples, "troupe_process_up", process="build-0") == 1
    finally:
        await tree.stop()
    samples = scrape(endpoint.url)
    assert handled(samples) == 3 * MESSAGES  # stopped children's counters are kept
    assert value(samples, "troupe_process_up", process="build-0") == 0
    assert value(samples, "troupe_process_up", process="build-1") == 0
