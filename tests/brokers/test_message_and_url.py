"""The message model, serializers, wire fields and broker selection by URL."""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import ConfigError
from troupe.brokers import JSON, MalformedMessage, MemoryBroker, Message, connect, redact
from troupe.brokers.message import BYTES, decode_body, from_fields, new_id, to_fields, unpack
from troupe.brokers.redis.broker import RedisBroker

headers = st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=4)


@given(
    body=st.binary(max_size=200),
    key=st.none() | st.text(max_size=20),
    headers=headers,
)
def test_fields_round_trip(body: bytes, key: str | None, headers: dict[str, str]) -> None:
    message = Message(body, key, headers)
    back = from_fields(to_fields(message), "1-0")
    assert back == message


plain = st.text("abcXYZ019_.:-", min_size=1, max_size=12)


@given(
    key=st.none() | plain | st.text(max_size=8),
    content_type=st.none() | st.sampled_from(["application/json", "text/plain; x"]),
    stamp=st.floats(allow_nan=False, allow_infinity=False),
)
def test_packed_fields_are_the_json_metadata_whatever_the_path(
    key: str | None, content_type: str | None, stamp: float
) -> None:
    # plain keys and ids take the fast path; its bytes are json.dumps' and read back alike
    headers = {} if content_type is None else {"content-type": content_type}
    message = Message(b'{"a":1}', key, headers, "m-1", stamp)
    meta = json.dumps(["m-1", stamp, key, headers or None], separators=(",", ":")).encode()
    assert to_fields(message) == {b"m": meta + b"\n" + b'{"a":1}'}
    assert unpack(to_fields(message)[b"m"], "1-0") == message


def test_message_ids_are_unique_hex_and_new_in_a_forked_child() -> None:
    ids = {new_id() for _ in range(10_000)} | {Message(b"").id for _ in range(100)}
    assert len(ids) == 10_100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child's ids must not repeat the parent's next ones
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = new_id()
    assert child[:20] != parent[:20] and child not in ids


def test_entries_of_other_producers_with_separate_fields_are_read() -> None:
    message = from_fields({b"b": b"body", b"k": b"key", b"h": b'{"a": "1"}'}, "5-0")
    assert message == Message(b"body", "key", {"a": "1"}, "5-0", 0.0)


def test_unreadable_fields_are_malformed_with_a_reason() -> None:
    with pytest.raises(MalformedMessage, match="neither"):
        from_fields({b"i": b"x"}, "1-0")
    with pytest.raises(MalformedMessage, match="unreadable"):
        from_fields({b"m": b"no newline"}, "1-0")
    with pytest.raises(MalformedMessage, match="unreadable"):
        from_fields({b"m": b'["id", "t", null, null]\nbody'}, "1-0")
    with pytest.raises(MalformedMessage, match="unreadable"):
        from_fields({b"b": b"", b"h": b"[1, 2]"}, "1-0")
    with pytest.raises(MalformedMessage, match="unreadable"):
        from_fields({b"b": b"", b"k": b"\xff\xfe"}, "1-0")


def test_json_is_the_default_and_bytes_pass_through() -> None:
    broker = MemoryBroker()
    message = broker.message({"a": [1, "é"]}, key="k", headers={"traceparent": "t"})
    assert JSON.loads(message.body) == {"a": [1, "é"]}
    assert message.headers["content-type"] == "application/json"
    raw = broker.message(b"\x00\x01")
    assert raw.body == b"\x00\x01"
    assert BYTES.loads(raw.body) == b"\x00\x01"
    with pytest.raises(MalformedMessage, match="does not decode"):
        decode_body(JSON, Message(b"\x80 not json"))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    _JSON_VALUES,
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]),
    st.sampled_from(["", " ", "\n", "\t "]),
)
def test_json_bodies_decode_as_json_loads_does(value: object, encoding: str, pad: str) -> None:
    # the UTF-8 fast path and json.loads' way (other encodings, a BOM, whitespace) agree
    body = (pad + json.dumps(value, ensure_ascii=False) + pad).encode(encoding)
    assert JSON.loads(body) == json.loads(body)


@given(st.binary(max_size=40))
def test_bodies_that_are_not_json_fail_as_json_loads_fails(body: bytes) -> None:
    try:
        expected: object = json.loads(body)
    except ValueError as exc:
        with pytest.raises(type(exc)) as raised:
            JSON.loads(body)
        assert str(raised.value) == str(exc)
    else:
        assert JSON.loads(body) == expected or expected != expected  # NaN is not NaN


def test_connect_picks_the_broker_by_url() -> None:
    assert isinstance(connect("memory://"), MemoryBroker)
    assert isinstance(connect("redis://127.0.0.1:1/0"), RedisBroker)
    tls = connect("rediss://127.0.0.1:1/0")
    assert isinstance(tls, RedisBroker)
    with pytest.raises(ConfigError, match="memory://, redis://, rediss://"):
        connect("ftp://user:pw@host")


def test_passwords_never_show(caplog: pytest.LogCaptureFixture) -> None:
    url = "rediss://app:s3cret@127.0.0.1:6380/2"
    broker = connect(url)
    assert "s3cret" not in repr(broker)
    assert "s3cret" not in broker.url
    assert redact(url) == "rediss://app:***@127.0.0.1:6380/2"
    assert redact("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as info:
        connect("bogus://u:s3cret@h")
    assert "s3cret" not in str(info.value)


async def test_connection_errors_do_not_leak_the_password() -> None:
    from troupe.brokers import BrokerConnectionError
    from troupe.brokers.servers import free_port

    broker = connect(f"redis://app:s3cret@127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerConnectionError) as info:
        await broker.connect()
    assert "s3cret" not in str(info.value)
    await broker.close()


async def test_rediss_url_uses_tls_and_keeps_the_password_out_of_sight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from troupe.brokers import BrokerConnectionError
    from troupe.brokers.servers import RedisServer

    with RedisServer(tls=True, password="s3cret") as server:
        assert server.url.startswith("rediss://")
        broker = connect(server.url, ssl_ca_certs=server.ca_file)
        session = await broker.consume("s", "g", "c", window=10)
        await broker.publish("s", {"over": "tls"})
        [delivery] = await session.fetch(10, 0)
        session.attempts.close()
        assert delivery.message is not None
        assert broker.serializer.loads(delivery.message.body) == {"over": "tls"}
        await broker.close()
        plain = connect(server.url.replace("rediss://", "redis://"))  # no TLS: refused
        with caplog.at_level(logging.DEBUG), pytest.raises(BrokerConnectionError) as info:
            await plain.connect()
        await plain.close()
        wrong = connect(server.url.replace("s3cret", "guess"), ssl_ca_certs=server.ca_file)
        with pytest.raises(Exception) as auth:
            await wrong.connect()
        await wrong.close()
    assert "s3cret" not in repr(broker) and "s3cret" not in str(info.value)
    assert "guess" not in str(auth.value)
    assert "s3cret" not in caplog.text
