"""Rate-limited logging for the broker clients' own loggers (aiokafka, pika).

During an outage a client library logs every failed reconnect (aiokafka wrote
1,569 ERROR lines in a 28 s Kafka outage). troupe says what matters itself, one
line per outage and one per recovery, naming the bridge and the broker; the
client's lines are thinned by :class:`RateLimit`: per logger and level, one record
passes every ``interval`` seconds, the others are counted, and the next record let
through says how many were held back.

>>> import logging
>>> limit = RateLimit(interval=10.0, clock=iter([0.0, 1.0, 2.0, 11.0]).__next__)
>>> def record(msg):
...     return logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, msg, None, None)
>>> [limit.filter(record("down")) for _ in range(3)]
[True, False, False]
>>> last = record("still down")
>>> limit.filter(last), last.getMessage()
(True, 'still down [2 similar lines held back by troupe in the last 10 s]')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Seconds between two records of one client logger and level that are let through.
CLIENT_LOG_INTERVAL = 10.0


class RateLimit(logging.Filter):
    """Lets one record per (logger, level) through every ``interval`` seconds."""

    def __init__(
        self, interval: float = CLIENT_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.held = 0  # records held back in all, for tests and curious users
        self._last: dict[tuple[str, int], tuple[float, int]] = {}
        self._lock = threading.Lock()  # clients may log from their own threads

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno)
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.interval:
                self._last[key] = (last[0], last[1] + 1)
                self.held += 1
                return False
            self._last[key] = (now, 0)
        if last is not None and last[1]:
            note = f" [{last[1]} similar lines held back by troupe in the last {self.interval:g} s]"
            record.msg = f"{record.getMessage()}{note}"
            record.args = None
        return True


_LIMIT = RateLimit()
_installed: set[str] = set()


def limit_client_logs(package: str) -> RateLimit:
    """Put the shared :class:`RateLimit` on ``package``'s logger and every logger below it
    that exists now (a logger's filters see only its own records). Idempotent."""
    names = [package] + [
        name for name in list(logging.Logger.manager.loggerDict) if name.startswith(package + ".")
    ]
    for name in names:
        if name in _installed:
            continue
        logging.getLogger(name).addFilter(_LIMIT)
        _installed.add(name)
    return _LIMIT


__all__ = ["CLIENT_LOG_INTERVAL", "RateLimit", "limit_client_logs"]
