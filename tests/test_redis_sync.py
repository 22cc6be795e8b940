"""The edge synchroniser against the in-memory twin of the store, and the CLI's pure planning:
version order, the no-recompile override path, reloads, refusals, last-known-good."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import document
from server_helpers import async_test

from flagedge.errors import DefinitionError
from flagedge.errors import Refusal as _Refused
from flagedge.model import Override, OverrideKind, Reason
from flagedge.snapshot import SnapshotHolder
from flagedge.store.lkg import read_lkg
from flagedge.store.memory import MemoryPlane
from flagedge.store.plane import (
    ChangeKind,
    RawState,
    Write,
    decode_message,
    decode_override,
)
from flagedge.store.sync import EdgeSync
from flagedge.store.writes import plan_rollout, validate

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


@async_test
async def test_an_override_at_the_next_version_is_applied_without_a_reload() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on", b="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        assert holder.current is not None and holder.current.version == 1
        base = holder.current.flags["b"]
        loads = plane.loads
        override(plane, "a", KILL)
        await until(lambda: sync.version == 2)
        assert plane.loads == loads  # no full reload
        assert holder.current.flags["b"] is base  # nothing recompiled
        assert holder.current.evaluate("a", {}, NOW).reason is Reason.DISABLED
        override(plane, "a", None)
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is True and plane.loads == loads
        await until(lambda: plane.heartbeats.get("host/1/abc") is not None)
        assert plane.heartbeats["host/1/abc"].version == 3
    finally:
        await sync.stop()


@async_test
async def test_duplicates_and_older_messages_are_ignored_and_gaps_reload() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60  # only messages drive it here
    await sync.start()
    try:
        loads = plane.loads
        lie = b'{"version": 1, "kind": "override", "key": "a", "override": {"kind": "kill"}}'
        plane.publish_raw(lie)  # a duplicate of version 1, claiming something else
        await asyncio.sleep(0.05)
        assert value(holder, "a") is True and plane.loads == loads
        # Redis moves two steps without telling anyone; the message for the second one
        # reveals the gap, and the edge reloads the truth instead of trusting the message.
        plane.overrides["a"] = b'{"kind": "kill", "variant": "off"}'
        plane.version_ = 3
        plane.publish_raw(b'{"version": 3, "kind": "override", "key": "a", "override": null}')
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is False and plane.loads == loads + 1
        plane.publish_raw(lie.replace(b'"version": 1', b'"version": 2'))  # late: ignored
        await asyncio.sleep(0.05)
        assert value(holder, "a") is False and plane.loads == loads + 1
    finally:
        await sync.stop()


@async_test
async def test_corrupt_state_is_refused_and_the_last_good_snapshot_keeps_serving() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        plane.definitions = b"{nope"
        plane.version_ = 2
        plane.publish_raw(b'{"version": 2, "kind": "definitions"}')
        await until(lambda: sync.error is not None)
        assert sync.version == 1 and value(holder, "a") is True
        assert "definitions: invalid JSON" in (sync.error or "")
        await until(lambda: plane.heartbeats["host/1/abc"].error is not None)
        push(plane, document(a="off"))
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is False and sync.error is None
    finally:
        await sync.stop()


@async_test
async def test_a_store_behind_the_edge_never_sends_it_back_and_a_reseed_moves_it_on() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    override(plane, "a", KILL)
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        await until(lambda: sync.version == 2)
        fresh = MemoryPlane()  # "Redis restarted empty"
        fresh.heartbeats = plane.heartbeats
        sync.plane = fresh
        plane.down = True
        await until(lambda: sync.redis_behind)
        assert sync.version == 2 and value(holder, "a") is None
        push(fresh, document(a="on"))  # version 1: older than the edge's, ignored
        await asyncio.sleep(0.1)
        assert sync.version == 2 and sync.redis_behind
        floor = max(b.version for b in fresh.heartbeats.values())
        assert push(fresh, document(a="on"), floor=floor) == 3
        await until(lambda: sync.version == 3)
        assert value(holder, "a") is True and not sync.redis_behind
    finally:
        await sync.stop()


@async_test
async def test_an_outage_keeps_serving_and_the_edge_converges_when_the_store_returns() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    await sync.start()
    try:
        plane.down = True
        await until(lambda: not sync.connected)
        assert sync.stale and value(holder, "a") is True
        plane.down = False
        override(plane, "a", KILL)
        override(plane, "a", Override(OverrideKind.KILL, "off"))
        await until(lambda: sync.version == 3 and sync.connected)
        assert value(holder, "a") is False and not sync.stale
    finally:
        await sync.stop()


@async_test
async def test_the_last_known_good_file_serves_when_the_store_is_down_at_start(
    tmp_path: Path,
) -> None:
    plane, lkg = MemoryPlane(), tmp_path / "lkg.json"
    push(plane, document(a="on"))
    override(plane, "a", KILL)
    first = make_sync(plane, SnapshotHolder(), lkg)
    await first.start()
    await until(lambda: lkg.exists() and read_lkg(lkg, "unit").version == 2)
    await first.stop()

    plane.down = True
    holder = SnapshotHolder()
    second = make_sync(plane, holder, lkg)
    await second.start(wait=0.2)
    try:
        assert second.source == "lkg" and second.stale and second.version == 2
        assert value(holder, "a") is None
        plane.down = False
        await until(lambda: second.source == "redis" and not second.stale)
    finally:
        await second.stop()
    with pytest.raises(DefinitionError, match="environment"):
        read_lkg(lkg, "other")


@async_test
async def test_a_burst_of_changes_is_saved_once_and_a_change_right_before_stop_is_saved(
    tmp_path: Path,
) -> None:
    plane, lkg = MemoryPlane(), tmp_path / "lkg.json"
    push(plane, document(a="on", b="on"))
    sync = EdgeSync(
        plane,
        SnapshotHolder(),
        env="unit",
        edge_id="host/1/abc",
        lkg_path=lkg,
        check_interval=60,
        heartbeat_interval=60,  # so that only the beat that follows an apply can report it
    )
    await sync.start()
    try:
        await until(lambda: lkg.exists() and read_lkg(lkg, "unit").version == 1)
        saved = lkg.stat().st_mtime_ns
        for i in range(10):  # a kill-switch storm, one change every 10 ms
            override(plane, "a", KILL if i % 2 == 0 else None)
            await asyncio.sleep(0.01)
        await until(lambda: sync.version == 11)
        await until(lambda: plane.heartbeats["host/1/abc"].version == 11)
        await until(lambda: read_lkg(lkg, "unit").version == 11)
        burst = lkg.stat().st_mtime_ns
        assert burst != saved
        await asyncio.sleep(0.3)
        assert lkg.stat().st_mtime_ns == burst  # one write for the whole burst
        override(plane, "b", KILL)
        await until(lambda: sync.version == 12)
    finally:
        await sync.stop()  # before the debounce has written version 12
    assert read_lkg(lkg, "unit").version == 12
    assert read_lkg(lkg, "unit").overrides.keys() == {"b"}


def test_messages_and_overrides_are_decoded_strictly() -> None:
    assert decode_message(b"[]") is None
    assert decode_message(b'{"version": true, "kind": "definitions"}') is None
    assert decode_message(b'{"version": 3, "kind": "override"}') is None
    msg = decode_message(b'{"version": 3, "kind": "override", "key": "a", "override": null}')
    assert msg is not None and msg.override is None and msg.key == "a"
    with pytest.raises(DefinitionError) as caught:
        decode_override(b'{"kind": "nuke", "percent": "ten", "x": 1}', "overrides.a")
    paths = [p.path for p in caught.value.problems]
    assert paths == ["overrides.a.kind", "overrides.a.percent", "overrides.a"]


def _raw(doc: dict[str, Any], overrides: dict[str, bytes] | None = None) -> RawState:
    return RawState(4, json.dumps(doc).encode(), overrides or {})


def test_a_rollout_on_a_two_bucket_split_rewrites_its_weights() -> None:
    doc = document(exp="off")
    doc["flags"]["exp"]["targeting"] = {"fractional": [["on", 5], ["off", 95]]}
    plan = plan_rollout(_raw(doc), "exp", 25, None, "me", 0)
    assert plan.write.kind is ChangeKind.DEFINITIONS and plan.write.expected == 4
    rewritten = json.loads(plan.write.definitions)["flags"]["exp"]["targeting"]
    assert rewritten == {"fractional": [["on", 25], ["off", 75]]}
    validate(plan)
    plan = plan_rollout(_raw(doc), "exp", 12.5, None, "me", 0)
    rewritten = json.loads(plan.write.definitions)["flags"]["exp"]["targeting"]
    assert rewritten == {"fractional": [["on", 1250], ["off", 8750]]}


def test_a_rollout_elsewhere_becomes_an_override_and_bad_input_is_refused() -> None:
    doc = document(plain="off")
    plan = plan_rollout(_raw(doc), "plain", 5, None, "me", 0)
    assert plan.write.override == Override(OverrideKind.ROLLOUT, "on", 5)
    validate(plan)
    with pytest.raises(_Refused, match="no flag named"):
        plan_rollout(_raw(doc), "missing", 5, None, "me", 0)
    with pytest.raises(_Refused, match="not a variant"):
        plan_rollout(_raw(doc), "plain", 5, "maybe", "me", 0)
