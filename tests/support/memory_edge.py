"""Driving an EdgeSync against the in-memory twin of the store (flagedge.store.memory):
writes as the Lua script makes them, a synchroniser with short intervals, waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flagedge.model import Override, OverrideKind
from flagedge.snapshot import SnapshotHolder
from flagedge.store.memory import MemoryPlane
from flagedge.store.plane import ChangeKind, Write
from flagedge.store.sync import EdgeSync

NOW = 1_700_000_000


def push(plane: MemoryPlane, doc: dict[str, Any], floor: int = 0) -> int:
    w = Write(
        plane.version_,
        ChangeKind.DEFINITIONS,
        "t",
        "push",
        definitions=json.dumps(doc).encode(),
        floor=floor,
    )
    result = plane.write(w)
    assert result.ok
    return result.version


def override(plane: MemoryPlane, flag: str, ov: Override | None) -> int:
    result = plane.write(
        Write(plane.version_, ChangeKind.OVERRIDE, "t", "kill", flag=flag, override=ov)
    )
    assert result.ok
    return result.version


KILL = Override(OverrideKind.KILL)


def make_sync(plane: MemoryPlane, holder: SnapshotHolder, lkg: Path | None = None) -> EdgeSync:
    return EdgeSync(
        plane,
        holder,
        env="unit",
        edge_id="host/1/abc",
        lkg_path=lkg,
        check_interval=0.05,
        heartbeat_interval=0.05,
        backoff_base=0.01,
        backoff_cap=0.05,
    )


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def value(holder: SnapshotHolder, flag: str) -> Any:
    assert holder.current is not None
    return holder.current.evaluate(flag, {}, NOW).value
