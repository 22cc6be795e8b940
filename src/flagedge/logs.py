"""Structured logs: one JSON object per line on stderr, for ``flagedge serve``.

    {"ts": "2026-05-01T12:00:00.123Z", "level": "info", "event": "apply",
     "msg": "applied version 7 from redis (load): 12 flag(s), 1 changed",
     "version": 7, "flags": 12, "changed": 1, "source": "redis", "logger": "flagedge.sync",
     "pid": 4242}

Code logs through the standard library; :func:`event` adds the event name and the fields
(``extra``), so the same call reads as a sentence under ``--log-format text`` and in tests
that use plain logging. A field never replaces ts, level, event, msg, logger or pid.

Events: startup, supervise (--workers), apply, override, reject, resync, connect, reconnect,
redis_unavailable, redis_behind, lkg, usage, limit, unreadable, shutdown, stopped ("log" for
anything unnamed).

A line that abuse can repeat (a refused call, a garbage message) goes through a
:class:`Throttle`: at most one per kind every few seconds, the next one saying how many
were left out, so that nobody can flood the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson

FORMATS: Final = ("json", "text")
LEVELS: Final = ("debug", "info", "warning", "error", "critical")
_CORE: Final = frozenset({"ts", "level", "event", "msg", "logger", "pid"})


def event(
    logger: logging.Logger, level: int, name: str, msg: str, *args: object, **fields: Any
) -> None:
    """Log ``msg % args`` as event ``name`` with ``fields``."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra={"event": name, "fields": fields})


class Throttle:
    """At most one log line per key every ``interval`` seconds.

    ``allow(key)`` returns None while the key is quiet (the line is left out and counted),
    else how many lines of that key were left out since the last one it allowed."""

    def __init__(
        self, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}
        self._lock = threading.Lock()  # gRPC handlers and file watchers log from threads

    def allow(self, key: str) -> int | None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._left_out.pop(key, 0)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "ts": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _CORE:
                    out[key] = value
        out["logger"] = record.name
        out["pid"] = record.process
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """For people at a terminal: the sentence, then the fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            extra = " ".join(
                f"{k}={orjson.dumps(v, default=str).decode()}" for k, v in fields.items()
            )
            first, nl, rest = line.partition("\n")
            line = f"{first} [{extra}]{nl}{rest}"
        return line


def parse_level(name: str) -> int:
    """A level name (any case) as a logging level; ValueError names the choices."""
    if name.lower() not in LEVELS:
        raise ValueError(f"log level {name!r} is not one of {', '.join(LEVELS)}")
    level: int = getattr(logging, name.upper())
    return level


def setup(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stderr), one per line."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
