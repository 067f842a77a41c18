"""A FastAPI app run by uvicorn in tests/web/test_web_frameworks.py: POST /orders/{id}
tells a slow actor, which appends the id to the file $ORDERS_OUT once handled."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, Request

from troupe import Actor, ActorSystem
from troupe.web import lifespan


class Writer(Actor):
    """Handles an order slowly (a backlog forms), then records it."""

    def __init__(self, path: str) -> None:
        self.out = open(path, "a")  # noqa: SIM115 - closed in on_stop

    async def receive(self, order_id: str) -> None:
        await asyncio.sleep(0.03)
        self.out.write(order_id + "\n")
        self.out.flush()

    def on_stop(self) -> None:
        self.out.close()


def build(system: ActorSystem) -> None:
    system.spawn(Writer, os.environ["ORDERS_OUT"], name="writer")


app = FastAPI(lifespan=lifespan(build, shutdown_timeout=30))


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/orders/{order_id}", status_code=202)
async def create(order_id: str, request: Request) -> dict[str, Any]:
    system: ActorSystem = request.state.troupe
    await system.lookup("writer").tell(order_id)
    return {"accepted": order_id}
