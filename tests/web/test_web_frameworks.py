"""Web frameworks under their real servers: nothing a request had accepted is lost on SIGTERM.

FastAPI with troupe.web.lifespan under uvicorn; Flask with a module-level SyncActorSystem
under Flask's own server and under gunicorn. Each test sends requests concurrently,
SIGTERMs the server while they flow, and checks that every order that got its 202 was
handled (written by the actor) before the process exited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ORDERS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "asgi_orders:app", "--port", str(port),
                "--log-level", "warning"]  # fmt: skip
    if server == "flask":
        return [sys.executable, "wsgi_orders.py", str(port)]
    return [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "8", "-b",
            f"127.0.0.1:{port}", "--log-level", "warning", "wsgi_orders:app"]  # fmt: skip


async def wait_up(client: httpx.AsyncClient, base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited before it served"
        try:
            if (await client.get(f"{base}/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not come up in 30 s")


@pytest.mark.parametrize("server", ["uvicorn", "flask", "gunicorn"])
async def test_nothing_accepted_is_lost_on_sigterm(server: str, tmp_path: Path) -> None:
    out = tmp_path / "handled.txt"
    out.touch()
    port = free_port()
    env = {**os.environ, "ORDERS_OUT": str(out), "PYTHONPATH": f"{ROOT}:{HERE}"}
    log = tmp_path / "server.log"
    with log.open("wb") as sink:  # the server's own lines, for a failure's message
        process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait
            command(server, port), cwd=HERE, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    third = asyncio.Event()  # a third of the orders accepted: time to SIGTERM
    refused = 0
    try:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            await wait_up(client, base, process)

            async def order(n: int) -> None:
                nonlocal refused
                try:
                    response = await client.post(f"{base}/orders/o{n}")
                except httpx.TransportError:
                    refused += 1  # the server had stopped accepting: not accepted
                    return
                if response.status_code == 202:
                    accepted.append(f"o{n}")
                    if len(accepted) >= ORDERS // 3:
                        third.set()
                else:
                    refused += 1

            tasks = [asyncio.create_task(order(n)) for n in range(ORDERS)]
            await third.wait()
            process.send_signal(signal.SIGTERM)  # while requests still flow
            backlog = len(accepted) - len(out.read_text().split())  # accepted, not yet handled
            await asyncio.gather(*tasks)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    handled = out.read_text().split()
    assert len(accepted) >= ORDERS // 3
    assert backlog > 0, "no accepted order was waiting at SIGTERM: the test proved nothing"
    lost = sorted(set(accepted) - set(handled))
    assert not lost, f"lost {len(lost)}: {lost[:10]}; server log: {log.read_text()[-2000:]}"
    assert len(handled) == len(set(handled))  # each handled once
    # after its graceful stop uvicorn raises SIGTERM again (its exit status says so);
    # gunicorn exits 0; Flask's server 143 (troupe.sigterm: SystemExit, then the drain)
    expected = {"uvicorn": -signal.SIGTERM, "flask": 143, "gunicorn": 0}[server]
    assert code == expected, log.read_text()[-2000:]
    print(f"{server}: {len(accepted)} accepted ({backlog} waiting at SIGTERM), {refused} refused")
