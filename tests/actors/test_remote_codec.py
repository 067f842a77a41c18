"""The remote wire's JSON codec: the same bytes and values as ``json``, refs as refs.

The codec keeps one C encoder per node and decodes with the scanner alone when a
body is one compact value; these tests hold it to ``json.dumps`` / ``json.loads``
for any JSON value and any body, and show that a refused message leaves the
encoder clean for the next one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import Actor, ActorRef, ActorSystem
from troupe.actors import RemoteRef, remote_node
from troupe.actors.remote_wire import RefCodec
from troupe.brokers import MemoryBroker

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture
async def codec() -> AsyncIterator[RefCodec]:
    async with ActorSystem("codec") as system:
        yield remote_node(system, MemoryBroker()).codec


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def test_bytes_and_values_are_json_s(codec: RefCodec) -> None:
    @given(JSON)
    def same(value: Any) -> None:
        body = codec.encode(value)
        assert body == compact(value)
        assert codec.decode(body) == value

    same()


async def test_whitespace_around_a_body_reads_as_json_loads_reads_it(codec: RefCodec) -> None:
    @given(st.sampled_from([b"", b" ", b"\n", b"\t "]), st.sampled_from([b"", b" ", b"\r\n"]))
    def same(before: bytes, after: bytes) -> None:
        body = before + b'{"k":"r","c":"7","v":[1,{"a":null}]}' + after
        assert codec.decode(body) == json.loads(body)

    same()


async def test_what_json_refuses_the_codec_refuses_with_a_value_error(codec: RefCodec) -> None:
    for body in (b'{"a":1} x', b'{"a":', b"", b"\xff\xfe{", b'{"a":1}{"b":2}', b"nope"):
        with pytest.raises(ValueError):
            codec.decode(body)


async def test_utf16_and_bom_bodies_are_read_as_json_loads_reads_them(codec: RefCodec) -> None:
    for body in ('{"a":"é"}'.encode("utf-16"), b'\xef\xbb\xbf{"a":1}'):
        assert codec.decode(body) == json.loads(body)


async def test_a_refused_message_leaves_the_encoder_clean(codec: RefCodec) -> None:
    shared: dict[str, Any] = {"sku": "a", "extra": [object()]}
    with pytest.raises(TypeError, match="cannot travel"):
        codec.encode({"items": [shared]})  # refused while inside ``shared``
    shared["extra"] = []
    assert codec.encode({"again": shared}) == b'{"again":{"sku":"a","extra":[]}}'  # not circular
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        codec.encode(loop)
    assert codec.encode([shared, shared]) == b'[{"sku":"a","extra":[]},{"sku":"a","extra":[]}]'


async def test_refs_travel_as_refs_and_come_back(codec: RefCodec) -> None:
    system = codec.node.system
    local = system.spawn(_Echo, name="echo")
    body = codec.encode({"to": local, "via": RemoteRef(codec.node, export="orders")})
    back = codec.decode(b" " + body)  # whitespace: the json.loads path, with the hook
    assert isinstance(back["to"], ActorRef) and back["to"] == local  # home: the local ref
    assert back["via"] == RemoteRef(codec.node, export="orders")
    assert codec.decode(body) == back


class _Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message
