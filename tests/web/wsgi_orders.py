"""A Flask app run by Flask's own server or gunicorn in tests/web/test_web_frameworks.py:
POST /orders/<id> tells a slow actor, which appends the id to $ORDERS_OUT once handled.

The WSGI pattern: one module-level SyncActorSystem per worker process, made when the
worker imports the app; it drains at interpreter exit, which SIGTERM reaches gracefully.
"""

from __future__ import annotations

import os
import sys
import time

from flask import Flask

from troupe import Actor, SyncActorSystem


class Writer(Actor):
    def __init__(self, path: str) -> None:
        self.out = open(path, "a")  # noqa: SIM115 - closed in on_stop

    def receive(self, order_id: str) -> None:
        time.sleep(0.03)  # slow: a backlog forms
        self.out.write(order_id + "\n")
        self.out.flush()

    def on_stop(self) -> None:
        self.out.close()


system = SyncActorSystem("web", shutdown_timeout=30)
writer = system.spawn(Writer, os.environ["ORDERS_OUT"], name="writer")
app = Flask(__name__)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/orders/<order_id>")
def create(order_id: str) -> tuple[dict[str, str], int]:
    system.tell(writer, order_id)
    return {"accepted": order_id}, 202


if __name__ == "__main__":  # Flask's own server: python wsgi_orders.py PORT
    app.run("127.0.0.1", int(sys.argv[1]), threaded=True)
