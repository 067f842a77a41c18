"""Checks of ``connect()`` options, run when a broker is made: a bad setting is a
:class:`~troupe.ConfigError` naming it at once, never a publish retried until its
delivery timeout.

>>> try:
...     check_port("redis://127.0.0.1:99999/0")
... except ConfigError as exc:
...     print(exc)
invalid setting 'broker url': port 99999 is out of range (1-65535) in 'redis://127.0.0.1:99999/0'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from troupe.errors import ConfigError, require_at_least

from .redaction import redact


def check_maxlen(maxlen: int | None) -> None:
    """``maxlen`` is None or a whole number of entries >= 1."""
    if maxlen is not None:
        require_at_least("maxlen", maxlen, 1)


def check_port(url: str) -> None:
    """The port of ``url`` (when it has one) is a number in 1-65535."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError("broker url", f"{redact(url)!r} is not a URL: {exc}") from exc
    hosts = parts.netloc.rsplit("@", 1)[-1]
    check_hosts(hosts.split(","), url)


def check_hosts(hosts: Iterable[str], url: str) -> None:
    """Each ``host[:port]`` has a port in 1-65535 (when it names one)."""
    for host in hosts:
        if host.startswith("["):  # [v6]:port
            _, _, rest = host.partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            port = host.rpartition(":")[2] if ":" in host else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(
                "broker url", f"port {port} is out of range (1-65535) in {redact(url)!r}"
            )


def check_client_options(
    options: Mapping[str, Any],
    client: str,
    *accepting: Callable[..., Any],
    reserved: Iterable[str] = (),
) -> None:
    """Every key of ``options`` is a keyword all of ``accepting`` take (and not one troupe
    sets itself): else a ConfigError naming the option and the ones allowed."""
    allowed: set[str] | None = None
    for function in accepting:
        names = {
            name
            for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name not in ("self", "loop")
        }
        allowed = names if allowed is None else allowed & names
    allowed = (allowed or set()) - set(reserved)
    for name in options:
        if name not in allowed:
            raise ConfigError(
                name,
                f"unknown option for {client}; troupe's own options are the broker class's "
                f"keywords, and these pass through to the client: {', '.join(sorted(allowed))}",
            )


__all__ = ["check_client_options", "check_hosts", "check_maxlen", "check_port"]
