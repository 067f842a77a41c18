"""The observer's HTTP side: JSON, /healthz and /readyz flipping, actions behind flag and token."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from observer_helpers import TOKEN, actor_names, get, post, running_tree, wait_for  # noqa: E402

import troupe.supervisors  # noqa: E402, F401  (the tree section)
from troupe import Actor, ActorSystem  # noqa: E402
from troupe.brokers import ConsumerBridge, connect  # noqa: E402
from troupe.brokers.servers import RedisServer  # noqa: E402
from troupe.observer import Observer, SystemSource  # noqa: E402


class Blocker(Actor):
    def receive(self, seconds: Any) -> None:
        time.sleep(seconds)  # blocks the loop on purpose


class Sink(Actor):
    def receive(self, message: Any) -> None:
        pass


def base_of(system: ActorSystem) -> str:
    assert system.metrics_endpoint is not None
    return system.metrics_endpoint.url.rsplit("/", 1)[0]


async def test_healthz_is_503_while_the_loop_is_blocked_and_200_again_after() -> None:
    async with ActorSystem(metrics_port=0, slow_handler_warning=None) as system:
        base = base_of(system)
        assert (await asyncio.to_thread(get, base + "/healthz")) == (
            200,
            {"status": "ok", "problems": []},
        )
        seen: dict[str, Any] = {}

        def probe() -> None:
            time.sleep(0.3)  # the loop is in the blocking handler by then
            seen["reply"] = get(base + "/healthz")

        prober = threading.Thread(target=probe)
        prober.start()
        system.spawn(Blocker).tell(3.0)
        await asyncio.to_thread(prober.join)
        status, body = seen["reply"]
        assert status == 503
        assert body["status"] == "unhealthy"
        assert "event loop blocked" in body["problems"][0]
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200


async def test_readyz_is_503_while_a_bridge_has_lost_its_broker_and_200_once_back() -> None:
    server = RedisServer()
    server.start()
    try:
        async with ActorSystem(metrics_port=0) as system:
            base = base_of(system)
            broker = connect(server.url)
            sink = system.spawn(Sink, name="sink")
            system.spawn(ConsumerBridge, broker, "jobs", "g", sink, name="jobs-bridge", block=0.1)

            def ready(code: int) -> bool:
                return get(base + "/readyz")[0] == code

            await asyncio.to_thread(wait_for, lambda: ready(200))
            server.stop()
            await asyncio.to_thread(wait_for, lambda: ready(503))
            status, body = await asyncio.to_thread(get, base + "/readyz")
            assert status == 503 and body["status"] == "not ready"
            assert any("jobs-bridge" in p for p in body["problems"]), body
            view = (await asyncio.to_thread(get, base + "/observer.json"))[1]
            assert [b["connected"] for b in view["bridges"]] == [False]
            server.start()
            await asyncio.to_thread(wait_for, lambda: ready(200))
            await broker.close()
    finally:
        server.close()


async def test_actions_are_refused_without_the_flag_and_without_the_token() -> None:
    async with ActorSystem(metrics_port=0) as system:
        base = base_of(system)
        system.spawn(Sink, name="sink")
        body = {"process": system.name, "action": "restart", "params": {"actor": "sink"}}
        # ActorSystem(metrics_port=...) serves a read-only observer
        status, reply = await asyncio.to_thread(post, base + "/observer/actions", body, TOKEN)
        assert status == 403 and "--allow-actions" in reply["error"]
        assert system.metrics_endpoint is not None
        Observer(SystemSource([system]), allow_actions=True, token=TOKEN).mount(
            system.metrics_endpoint.server
        )
        for token in (None, "wrong"):
            status, reply = await asyncio.to_thread(post, base + "/observer/actions", body, token)
            assert status == 401, reply
        assert system.restarts == 0
        status, reply = await asyncio.to_thread(post, base + "/observer/actions", body, TOKEN)
        assert (status, reply) == (200, {"result": "restarting sink"})
        await asyncio.to_thread(wait_for, lambda: system.restarts == 1)
        status, reply = await asyncio.to_thread(
            post, base + "/observer/actions", {**body, "params": {"actor": "nobody"}}, TOKEN
        )
        assert status == 409 and "nobody" in reply["error"]


def test_a_process_tree_shows_every_child_and_a_killed_child_comes_back() -> None:
    with running_tree("--allow-actions") as tree:
        view = tree.view()
        assert len(view["tree"]) == 2
        for process in view["tree"]:
            names = {n["name"] for n in process["children"]}
            assert {"workers", "orders", "orders-bridge"} <= names
            workers = next(n for n in process["children"] if n["name"] == "workers")
            assert workers["kind"] == "supervisor"
            assert {c["name"] for c in workers["children"]} == {"worker-a", "worker-b"}
        assert get(tree.base + "/healthz")[0] == 200
        wait_for(lambda: get(tree.base + "/readyz")[0] == 200)
        first = view["tree"][0]
        os.kill(first["pid"], signal.SIGKILL)
        again = wait_for(
            lambda: next(
                (
                    p
                    for p in tree.view()["tree"]
                    if p["name"] == first["name"] and p["pid"] != first["pid"] and p["children"]
                ),
                None,
            )
        )
        assert again["restarts"] == 1
        # an action inside a child process: stop one worker of its supervisor
        body = {"process": again["name"], "action": "stop", "params": {"actor": "orders"}}
        status, reply = post(tree.base + "/observer/actions", body, TOKEN)
        assert status == 200, reply
        wait_for(
            lambda: (
                "orders"
                not in actor_names(
                    {"tree": [p for p in tree.view()["tree"] if p["name"] == again["name"]]}
                )
            )
        )
