"""``troupe demo`` on the embedded broker: faults injected, summary right, /metrics served."""

from __future__ import annotations

import asyncio
import io
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from troupe import ActorSystem, ConfigError
from troupe.cli import main as troupe_main
from troupe.examples.orders.app import OrderSettings, start_orders
from troupe.examples.orders.demo import DemoOptions, _register_metrics, render, run_demo


async def test_demo_on_memory_settles_every_order_and_balances() -> None:
    options = DemoOptions(orders=150, rate=0, metrics_port=0, seed=3)
    err = io.StringIO()
    result = await run_demo(options, err=err)
    s = result.summary
    assert result.ok, render(result, options)
    assert s["completed"] + s["compensated"] == 150
    assert s["needs_attention"] == 0
    assert s["duplicates_suppressed"] == result.submissions - result.unique > 0
    assert s["injected_crashes"] > 0 and s["restarts"] >= s["injected_crashes"]
    assert s["step_retries"] >= s["injected_crashes"]
    assert result.outcomes.get("compensated:payment", 0) > 0  # declines happened
    assert result.metrics_url is not None and result.metrics_url.startswith("http://127.0.0.1:")
    progress = err.getvalue()
    assert "metrics at http://127.0.0.1:" in progress and "/150 orders" in progress
    text = render(result, options)
    for row in (
        "orders completed",
        "orders compensated",
        "actor restarts",
        "dead letters",
        "duplicates suppressed",
        "money balanced",
    ):
        assert row in text
    assert text.rstrip().endswith("OK")


async def test_metrics_endpoint_shows_runtime_and_saga_metrics_while_running() -> None:
    async with ActorSystem("metrics-demo", metrics_port=0) as system:
        app = await start_orders(system, OrderSettings())
        url = _register_metrics(system, app)
        assert url is not None
        from troupe.examples.orders import CreateOrder

        await app.submit(CreateOrder("o-1", "ada", {"book": 1}, 1500))
        await app.settled(1)

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

        body = await asyncio.to_thread(scrape)
        assert 'troupe_sagas_total{outcome="completed",saga="order"} 1.0' in body
        assert "troupe_sagas_needs_attention" in body
        assert "troupe_messages_total" in body
    await app.close()


def test_troupe_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    status = troupe_main(
        ["demo", "--orders", "40", "--rate", "0", "--metrics-port", "-1", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "troupe demo: 40 orders on memory://" in out and out.rstrip().endswith("OK")


def test_the_summary_shown_in_the_docs_is_what_the_demo_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/guides/demo.md quotes the default run's summary (seed 7): it must not go stale."""
    page = (Path(__file__).parents[2] / "docs" / "guides" / "demo.md").read_text()
    quoted = re.search(r"```\n(troupe demo: .*?\nOK)\n```", page, re.S)
    assert quoted is not None, "demo.md lost its summary block"
    assert troupe_main(["demo", "--metrics-port", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip()
    seconds = re.compile(r" in [0-9.]+ s ")
    assert seconds.sub(" in S s ", printed) == seconds.sub(" in S s ", quoted.group(1))


def test_troupe_demo_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        troupe_main(["demo", "--orders", "0"])
    assert exit_info.value.code == 2
    assert "argument --orders: must be at least 1" in capsys.readouterr().err
    assert troupe_main(["demo", "--broker", "ftp://nowhere", "--orders", "1"]) == 2
    assert "no supported scheme" in capsys.readouterr().err
    # nothing listens on port 1: a clear error, not a traceback
    assert troupe_main(["demo", "--broker", "redis://127.0.0.1:1/0", "--orders", "1"]) == 1
    assert "cannot use redis://127.0.0.1:1/0" in capsys.readouterr().err


async def test_series_do_not_grow_with_the_number_of_orders() -> None:
    """Per-run saga actors share one metrics label: ids never become label values."""
    small, large = [
        await run_demo(DemoOptions(orders=n, rate=0, metrics_port=0, seed=5, progress=False))
        for n in (60, 600)
    ]
    assert small.ok and large.ok
    assert small.series is not None and large.series is not None
    assert large.series == small.series <= 1500


async def test_the_demo_exports_its_bridge_broker_counters() -> None:
    async with ActorSystem("broker-row", metrics_port=0) as system:
        app = await start_orders(system, OrderSettings())
        url = _register_metrics(system, app)
        assert url is not None
        from troupe.examples.orders import CreateOrder

        for n in range(3):
            await app.submit(CreateOrder(f"o-{n}", "ada", {"book": 1}, 1500))
        await app.settled(3)

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        samples = await asyncio.to_thread(scrape)
    await app.close()
    consumer = (("bridge", "troupe:orders:events/orders"), ("broker", "memory"))
    # every order's events went out through the producer and came back through the consumer
    assert samples[("troupe_broker_consumed_total", consumer)] >= 3
    assert samples[("troupe_broker_acked_total", consumer)] >= 3
    published = [
        v
        for (name, labels), v in samples.items()
        if name == "troupe_broker_published_total" and ("broker", "memory") in labels
    ]
    assert sum(published) >= 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"duplicates": 2}, "'duplicates': must be a number from 0 to 1, got 2"),
        ({"rate": -5}, "'rate': must be a number zero or more, got -5"),
        ({"crash_every": -1}, "'crash_every': must be at least 0, got -1"),
        ({"orders": 0}, "'orders': must be at least 1, got 0"),
    ],
)
def test_demo_options_are_checked_in_code_too(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        DemoOptions(**settings)
