"""Keeping passwords out of logs, reprs and errors: a broker URL with its password hidden.

>>> redact("redis://app:s3cret@127.0.0.1:6379/0")
'redis://app:***@127.0.0.1:6379/0'
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    hosts = parts.netloc.rsplit("@", 1)[1]  # as written (Kafka lists several host:port)
    netloc = f"{user}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


__all__ = ["redact"]
