"""The last-known-good file: the state an edge last applied, for starting while Redis is away.

    {"env", "version", "definitions" (text), "overrides" {key: text}, "written_at"}

Written atomically (temp file, fsync, rename, fsync of the directory), so a reader sees the
old file or the new one, never half of one. It holds every rule, so it is the edge's to
read: mode 0600.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from types import MappingProxyType

import orjson

from ..errors import DefinitionError, Problem
from .plane import RawState


def write_lkg(path: Path, env: str, raw: RawState) -> None:
    """Write ``raw`` to ``path`` atomically: a reader sees the old file or the new one."""
    body = orjson.dumps(
        {
            "env": env,
            "version": raw.version,
            "definitions": (raw.definitions or b"").decode("utf-8", "replace"),
            "overrides": {k: v.decode("utf-8", "replace") for k, v in raw.overrides.items()},
            "written_at": time.time(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid and thread keep writers sharing one file (workers; a shutdown's final save
    # beside a write still in its thread) from writing through each other's temp file.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    # 0600 from the start: the file holds every rule (plans, email domains, customers).
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_lkg(path: Path, env: str) -> RawState:
    """The state saved in ``path``; DefinitionError when it is missing, foreign or damaged."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise DefinitionError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    except orjson.JSONDecodeError as exc:
        raise DefinitionError([Problem("", f"{path} is not JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise DefinitionError([Problem("", f"{path} is not a last-known-good file")])
    if data.get("env") != env:
        raise DefinitionError(
            [Problem("env", f"{path} holds environment {data.get('env')!r}, not {env!r}")]
        )
    version, definitions, overrides = (
        data.get("version"),
        data.get("definitions"),
        data.get("overrides"),
    )
    if not isinstance(version, int) or not isinstance(definitions, str):
        raise DefinitionError([Problem("", f"{path} lacks a version or definitions")])
    if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
        raise DefinitionError([Problem("overrides", f"{path} has malformed overrides")])
    return RawState(
        version,
        definitions.encode(),
        MappingProxyType({str(k): v.encode() for k, v in overrides.items()}),
    )
