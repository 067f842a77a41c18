"""AsyncAPI 3 documents of a system's bridges, validated with the official parser
(``@asyncapi/parser`` from npm, run with node); served beside /metrics and written by
``troupe asyncapi``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asyncapi.shop import build
from troupe import ActorSystem
from troupe.brokers.asyncapi import document, serve_document
from troupe.brokers.servers.pytest_plugin import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PARSER = "@asyncapi/parser@3.6.3"
PARSER_DIR = Path.home() / ".cache" / "troupe" / "asyncapi-parser"


@pytest.fixture(scope="session")
def validator() -> Iterator[Path]:
    """The parser installed once in ~/.cache/troupe/asyncapi-parser, and its script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run @asyncapi/parser (not installed here)")
    PARSER_DIR.mkdir(parents=True, exist_ok=True)
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        (PARSER_DIR / "package.json").write_text('{"name": "troupe-asyncapi-check"}\n')
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", PARSER],
            cwd=PARSER_DIR,
            check=True,
            timeout=300,
        )
    script = PARSER_DIR / "validate.mjs"
    shutil.copyfile(HERE / "validate.mjs", script)
    yield script


def validate(validator: Path, doc: dict[str, Any] | bytes, tmp_path: Path) -> list[Any]:
    """Parse with @asyncapi/parser; the diagnostics (asserts there is no error)."""
    path = tmp_path / "asyncapi.json"
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    out = subprocess.run(
        ["node", str(validator), str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    errors = [d for d in result["diagnostics"] if d["severity"] == 0]
    assert result["valid"] and not errors, errors
    return result["diagnostics"]  # type: ignore[no-any-return]


async def test_the_document_of_a_system_is_valid_asyncapi_3(
    validator: Path, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_BROKER", redis_url)
    async with ActorSystem("shop") as system:
        build(system)
        doc = document(system, version="2.1.0")
    validate(validator, doc, tmp_path)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "shop" and doc["info"]["version"] == "2.1.0"
    [(server_key, server)] = doc["servers"].items()
    assert server["protocol"] == "redis"
    assert server["host"] == redis_url.split("//")[1].split("/")[0]
    channels = doc["channels"]
    assert {c["address"] for c in channels.values()} == {"orders", "payments", "shipments", "audit"}
    by_address = {c["address"]: c for c in channels.values()}
    assert list(by_address["orders"]["messages"]) == ["Order"]  # the producer reuses it
    assert list(by_address["payments"]["messages"]) == ["Payment"]
    assert list(by_address["shipments"]["messages"]) == ["Shipment"]
    assert list(by_address["audit"]["messages"]) == ["Payload"]  # untyped
    assert by_address["orders"]["servers"] == [{"$ref": f"#/servers/{server_key}"}]
    actions = sorted((op["action"], op["channel"]["$ref"]) for op in doc["operations"].values())
    assert [a for a, _ in actions].count("receive") == 3
    assert [a for a, _ in actions].count("send") == 2
    schemas = doc["components"]["schemas"]
    order = schemas["Order"]
    assert order["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item"}
    assert set(order["required"]) == {"id", "items"}
    assert schemas["Item"]["properties"]["qty"]["type"] == "integer"
    assert schemas["Payment"]["properties"]["amount"]["type"] == "number"  # Pydantic's
    assert schemas["Shipment"]["properties"]["carrier"]["type"] == "string"  # msgspec's
    messages = doc["components"]["messages"]
    assert messages["Order"]["payload"] == {"$ref": "#/components/schemas/Order"}
    assert messages["Order"]["summary"] == "An order placed in the shop."


async def test_the_document_is_served_beside_metrics(validator: Path, tmp_path: Path) -> None:
    async with ActorSystem("shop", metrics_port=0) as system:
        build(system)
        url = serve_document(system)
        assert url.endswith("/asyncapi.json")
        body = await _get(url)
        metrics = await _get(system.metrics_endpoint.url)  # type: ignore[union-attr]
    validate(validator, body, tmp_path)
    assert json.loads(body)["channels"]
    assert b"troupe_messages_total" in metrics


async def _get(url: str) -> bytes:
    import asyncio

    def fetch() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            data: bytes = response.read()
            return data

    return await asyncio.to_thread(fetch)


def test_the_cli_writes_the_document(validator: Path, tmp_path: Path) -> None:
    out = tmp_path / "shop.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOP_BROKER": "memory://"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "troupe",
            "asyncapi",
            "tests.asyncapi.shop:build",
            "-o",
            str(out),
            "--title",
            "Shop",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["info"]["title"] == "Shop"
    assert doc["servers"]["memory"]["protocol"] == "memory"
    validate(validator, out.read_bytes(), tmp_path)


@pytest.mark.parametrize(
    ("url", "protocol"),
    [("amqp://guest:secret@127.0.0.1:1/", "amqp"), ("kafka://127.0.0.1:1", "kafka")],
)
async def test_broker_bindings_and_no_password(
    validator: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, protocol: str
) -> None:
    # the brokers are not reachable: the document describes the bridges, not the servers
    monkeypatch.setenv("SHOP_BROKER", url)
    async with ActorSystem("shop") as system:
        build(system)
        doc = document(system)
    validate(validator, doc, tmp_path)
    [server] = doc["servers"].values()
    assert server == {"host": "127.0.0.1:1", "protocol": protocol}
    assert "secret" not in json.dumps(doc)
    orders = next(c for c in doc["channels"].values() if c["address"] == "orders")
    billing = next(op for op in doc["operations"].values() if "billing" in op["summary"])
    if protocol == "amqp":
        assert orders["bindings"]["amqp"]["queue"]["name"] == "orders"
    else:
        assert billing["bindings"]["kafka"]["groupId"]["enum"] == ["billing"]


def test_the_module_examples_run() -> None:
    import doctest

    from troupe import message_types
    from troupe.brokers import asyncapi, typed_payloads

    for module in (asyncapi, typed_payloads, message_types):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
