"""``troupe demo --broker kafka://...``: the order system's events through Kafka topics."""

from __future__ import annotations

from troupe.examples.orders.demo import DemoOptions, render, run_demo


async def test_demo_runs_on_kafka(kafka_url: str) -> None:
    bootstrap = kafka_url.split("?", 1)[0]  # the demo picks a fresh namespace per run
    options = DemoOptions(orders=120, broker=bootstrap, rate=0, metrics_port=None, seed=11)
    result = await run_demo(options)
    s = result.summary
    assert result.ok, render(result, options)
    assert s["completed"] + s["compensated"] == 120
    assert s["duplicates_suppressed"] == result.submissions - result.unique > 0
    assert s["injected_crashes"] > 0 and s["restarts"] >= s["injected_crashes"]
