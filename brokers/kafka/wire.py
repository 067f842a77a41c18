"""How a troupe :class:`~troupe.brokers.Message` travels as a Kafka record, and back.

A message becomes one record: ``key`` (UTF-8), ``value`` (the body), the record
timestamp (ms) and headers: the message's own headers (UTF-8 values) plus
``troupe-id`` (the message id). Records from other producers (kcat, a Java or plain
aiokafka producer) carry no ``troupe-id``: their id is ``<topic>:<partition>:<offset>``
and their body is the value as it is (``b""`` for a null value).

A record whose key or a header value is not UTF-8 cannot be a Message: it becomes a
delivery without one, whose ``raw`` keeps the record byte for byte (``key``,
``value`` and one ``h:<name>`` field per header), and its DLQ copy is the same record
with the dead-letter headers added.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..message import Message

logger = logging.getLogger(__name__)

ID_HEADER = "troupe-id"
RAW_KEY = b"key"
RAW_VALUE = b"value"
RAW_HEADER = b"h:"

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int | None]
"""(key, value, headers, timestamp in ms) as the aiokafka producer takes them."""


def to_record(message: Message) -> Record:
    """The record a message is produced as (a DLQ copy of a raw record: that record)."""
    if message.raw is not None:
        raw = message.raw
        headers = [
            (name[len(RAW_HEADER) :].decode(errors="replace"), value)
            for name, value in raw.items()
            if name.startswith(RAW_HEADER)
        ]
        headers += [(k, v.encode()) for k, v in message.headers.items()]
        return raw.get(RAW_KEY), raw.get(RAW_VALUE), headers, None
    headers = [(k, v.encode()) for k, v in message.headers.items()]
    headers.append((ID_HEADER, message.id.encode()))
    key = message.key.encode() if message.key is not None else None
    return key, message.body, headers, int(message.timestamp * 1000)


def from_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    timestamp_ms: int,
) -> tuple[Message | None, str | None, dict[bytes, bytes] | None]:
    """(message, None, None), or (None, reason, raw fields) for an unreadable record."""
    decoded: dict[str, str] = {}
    message_id = None
    try:
        for name, data in headers:  # the id header taken out on the way (once per record)
            if name == ID_HEADER:
                message_id = data.decode()
            else:
                decoded[name] = data.decode()
        text_key = key.decode() if key is not None else None
    except UnicodeDecodeError as exc:
        return (
            None,
            f"record {topic}:{partition}:{offset} has unreadable fields (not UTF-8): {exc}",
            raw(key, value, headers),
        )
    message_id = message_id or f"{topic}:{partition}:{offset}"
    return (
        Message(value if value is not None else b"", text_key, decoded, message_id,
                timestamp_ms / 1000.0),
        None,
        None,
    )  # fmt: skip


def raw(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> dict[bytes, bytes]:
    """A record's fields byte for byte: ``key``, ``value``, ``h:<name>`` per header."""
    fields: dict[bytes, bytes] = {}
    if key is not None:
        fields[RAW_KEY] = key
    if value is not None:
        fields[RAW_VALUE] = value
    for name, data in headers:
        fields[RAW_HEADER + name.encode(errors="surrogateescape")] = data
    return fields


def header_map(headers: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """String headers as Kafka record headers."""
    return [(k, str(v).encode()) for k, v in headers.items()]


__all__ = ["ID_HEADER", "Record", "from_record", "header_map", "raw", "to_record"]
