"""A hostile control plane: forged heartbeats and pub/sub messages, hand-made corrupt keys,
garbage floods, secrets in Redis URLs. Real redis-server processes, real edges, the real CLI
(unit tests of the synchroniser use the in-memory twin)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagedge.model import Override, OverrideKind
from flagedge.snapshot import SnapshotHolder
from flagedge.store.lkg import write_lkg
from flagedge.store.memory import MemoryPlane
from flagedge.store.plane import MAX_VERSION, ChangeKind, ChangeMessage, Keys, RawState, Write
from flagedge.store.redis import redact
from tests.support.cli import flagctl
from tests.support.documents import document
from tests.support.memory_edge import KILL, make_sync, override, push, until, value
from tests.support.processes import Edge
from tests.support.redis_server import RedisServer
from tests.support.server import async_test
from tests.support.wait import wait_until

ENV = "hostile"
KEYS = Keys(ENV)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


def ctl(server: RedisServer, *argv: str) -> tuple[int, str, str]:
    return flagctl(*argv, "--redis", server.url, "--env", ENV)


def push_file(server: RedisServer, tmp_path: Path, doc: dict[str, Any]) -> int:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(doc))
    code, out, err = ctl(server, "push", str(path), "--json")
    assert code == 0, err
    return int(json.loads(out)["version"])


def fake_heartbeat(server: RedisServer, edge_id: str, version: int) -> None:
    beat = {
        "id": edge_id,
        "host": "nowhere",
        "pid": 1,
        "version": version,
        "applied_at": time.time(),
        "stale": False,
        "redis_version": version,
        "error": None,
    }
    server.client().set(KEYS.edge(edge_id), json.dumps(beat), px=60_000)


# -- versions stay exact (finding 4) -----------------------------------------------------------


def test_a_heartbeat_claiming_version_2_53_cannot_lift_every_later_write(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    assert push_file(redis_server, tmp_path, document(a="on", b="on")) == 1
    fake_heartbeat(redis_server, "forged", 2**53)
    code, out, err = ctl(redis_server, "kill", "a", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == 2  # not 9007199254740992
    assert "ignored the version of 1 edge(s) (forged at version 9007199254740992)" in err
    code, out, _ = ctl(redis_server, "kill", "b", "--json")
    assert json.loads(out)["version"] == 3  # and the next write moves on, exactly
    assert json.loads(out)["ignored_edges"] == [{"id": "forged", "version": 2**53}]
    # The forged edge did not apply those writes: not converged, whatever it claims.
    code, out, _ = ctl(redis_server, "status", "--json")
    assert code == 1 and json.loads(out)["converged"] is False
    code, out, _ = ctl(redis_server, "status")
    assert "forged: version 9007199254740992, far beyond any version Redis held" in out
    code, out, _ = ctl(redis_server, "restore", "a", "--wait", "--timeout", "1")
    assert code == 1 and "NOT applied: reports version 9007199254740992" in out


def test_versions_near_2_53_are_exact_and_the_last_one_is_refused_not_rounded(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_file(redis_server, tmp_path, document(a="on"))
    r = redis_server.client()
    r.set(KEYS.version, MAX_VERSION - 2)
    code, out, err = ctl(redis_server, "kill", "a", "--json")
    assert code == 0, err
    assert json.loads(out)["version"] == MAX_VERSION - 1 == int(r.get(KEYS.version))
    code, out, err = ctl(redis_server, "restore", "a", "--json")
    assert code == 0 and json.loads(out)["version"] == MAX_VERSION
    audit_before = r.xlen(KEYS.audit)
    code, _, err = ctl(redis_server, "kill", "a")
    assert code == 2 and "would pass 2^53-1" in err and "nothing written" in err
    assert int(r.get(KEYS.version)) == MAX_VERSION and r.xlen(KEYS.audit) == audit_before
    r.set(KEYS.version, b"9007199254740993")  # beyond: not a version at all
    code, _, err = ctl(redis_server, "kill", "a")
    assert code == 2 and "is not a version" in err


# -- forged messages (finding 5) ---------------------------------------------------------------


def test_a_forged_message_cannot_kill_a_flag_and_leaves_no_trace(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    version = push_file(redis_server, tmp_path, document(a="on", b="on"))
    edge = Edge(redis_server.url, ENV, tmp_path / "lkg.json").wait_serving()
    try:
        r = redis_server.client()
        forged = {
            "version": version + 1,
            "kind": "override",
            "key": "a",
            "override": {"kind": "kill"},
        }
        for _ in range(3):
            r.publish(KEYS.channel, json.dumps(forged))
        time.sleep(1.0)  # what it would take a real one to arrive: about a millisecond
        assert edge.value("a") is True and edge.version() == version
        code, out, _ = ctl(redis_server, "status", "--json")
        assert code == 0 and json.loads(out)["converged"] is True
        assert r.xlen(KEYS.audit) == 1  # the push only
        # A real kill still takes the fast path's answer.
        code, _, err = ctl(redis_server, "kill", "a", "--wait")
        assert code == 0, err
        assert edge.value("a") is None
    finally:
        assert edge.stop() == 0


@async_test
async def test_a_forged_message_naming_the_wrong_flag_at_a_real_version_is_not_applied() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on", b="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60  # only messages drive it here
    await sync.start()
    try:
        version = sync.version
        # A forger races a real write: its message for version+1 names "a", arrives first,
        # and Redis really is at version+1, because of a write to "b".
        plane.publish_raw(ChangeMessage(version + 1, ChangeKind.OVERRIDE, "a", KILL).to_json())
        override(plane, "b", KILL)
        await until(lambda: sync.version == version + 1)
        await until(lambda: value(holder, "b") is None)
        assert value(holder, "a") is True
    finally:
        await sync.stop()


@async_test
async def test_an_override_message_applies_the_override_redis_holds_not_its_own() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on", b="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60
    await sync.start()
    try:
        loads = plane.loads
        rollout = Override(OverrideKind.ROLLOUT, "off", 100.0)
        # Write the kill without its message, then publish a message claiming a rollout.
        subscribers, plane._subscribers = plane._subscribers, set()
        result = plane.write(
            Write(plane.version_, ChangeKind.OVERRIDE, "t", "kill", flag="a", override=KILL)
        )
        plane._subscribers = subscribers
        plane.publish_raw(
            ChangeMessage(result.version, ChangeKind.OVERRIDE, "a", rollout).to_json()
        )
        await until(lambda: sync.version == result.version)
        assert holder.current is not None and holder.current.overrides["a"] == KILL
        assert plane.loads == loads  # the fast path: one small read, no reload
    finally:
        await sync.stop()


@async_test
async def test_writes_that_outrun_the_confirmation_reload_without_recompiling() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on", b="on", c="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60
    await sync.start()
    try:
        assert holder.current is not None
        untouched = holder.current.flags["b"]
        loads = plane.loads
        override(plane, "a", KILL)  # both written before the edge reads either message:
        version = override(plane, "c", KILL)  # the first is no longer Redis's last write
        await until(lambda: sync.version == version)
        assert value(holder, "a") is None and value(holder, "c") is None
        assert plane.loads == loads + 1  # one reload for both...
        assert holder.current.flags["b"] is untouched  # ...that recompiled nothing
    finally:
        await sync.stop()


# -- corrupt keys (finding 10) ----------------------------------------------------------------


def test_corrupt_keys_are_reported_and_the_edge_keeps_serving_connected(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_file(redis_server, tmp_path, document(a="on"))
    edge = Edge(redis_server.url, ENV, tmp_path / "lkg.json").wait_serving()
    r = redis_server.client()
    try:
        r.delete(KEYS.definitions)
        r.hset(KEYS.definitions, "not", "a string")
        r.incr(KEYS.version)
        wait_until(
            "the wrong type to be reported", lambda: "definitions" in (edge.readyz()["error"] or "")
        )
        ready = edge.readyz()
        assert ready["connected"] is True and "wrong Redis type" in ready["error"]
        assert edge.value("a") is True and edge.version() == 1
        beat = wait_until("a heartbeat carrying it", lambda: _beat(redis_server))
        assert "definitions" in beat["error"]

        r.set(KEYS.version, b"not a number")
        wait_until(
            "the bad version to be reported", lambda: "version" in (edge.readyz()["error"] or "")
        )
        ready = edge.readyz()
        assert ready["connected"] is True and "is not a version" in ready["error"]
        assert edge.value("a") is True
        code, _, err = ctl(redis_server, "status")
        assert code == 2 and "is not a version" in err and "Traceback" not in err

        # The CLI will not write over a key of the wrong type...
        r.set(KEYS.version, 2)
        code, _, err = ctl(redis_server, "push", str(tmp_path / "flags.json"), "--force")
        assert code == 2 and "definitions: holds the wrong Redis type" in err
        # ...not even one it does not read first (the write script checks every key before
        # it changes any, so nothing is left half-written)...
        r.delete(KEYS.definitions)
        r.delete(KEYS.audit)
        r.set(KEYS.audit, b"not a stream")
        code, _, err = ctl(redis_server, "push", str(tmp_path / "flags.json"), "--force")
        assert code == 2 and "audit: holds a Redis string; nothing written" in err
        assert int(r.get(KEYS.version)) == 2 and r.get(KEYS.definitions) is None
        # ...and once the keys are fixed, everything converges again.
        r.delete(KEYS.audit)
        push_file(redis_server, tmp_path, document(a="off"))
        wait_until("the edge to converge", lambda: edge.value("a") is False)
        assert edge.readyz()["error"] is None
    finally:
        assert edge.stop() == 0
    assert "Traceback" not in edge.text() and "synchroniser failed" not in edge.text()
    assert edge.text().count('"event":"reject"') <= 4  # once per distinct refusal


def _beat(server: RedisServer) -> dict[str, Any] | None:
    for name in server.client().scan_iter(match=KEYS.edge_pattern):
        beat: dict[str, Any] = json.loads(server.client().get(name))
        if beat.get("error"):
            return beat
    return None


# -- garbage floods (finding 11) ---------------------------------------------------------------


@async_test
async def test_a_burst_of_garbage_messages_costs_a_reload_or_two_not_one_each() -> None:
    plane, holder = MemoryPlane(), SnapshotHolder()
    push(plane, document(a="on"))
    sync = make_sync(plane, holder)
    sync.check_interval = 60
    await sync.start()
    try:
        loads = plane.loads
        for i in range(2_000):
            plane.publish_raw(b"garbage %d" % i)
        version = override(plane, "a", KILL)
        await until(lambda: sync.version == version)
        assert plane.loads - loads <= 2
    finally:
        await sync.stop()


def test_two_thousand_garbage_messages_leave_a_few_log_lines(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_file(redis_server, tmp_path, document(a="on"))
    edge = Edge(redis_server.url, ENV, tmp_path / "lkg.json").wait_serving()
    try:
        mark = edge.mark()
        r = redis_server.client()
        pipe = r.pipeline(transaction=False)
        for i in range(2_000):
            pipe.publish(KEYS.channel, b"{garbage %d" % i)
        pipe.execute()
        code, _, err = ctl(redis_server, "kill", "a", "--wait")
        assert code == 0, err
        assert edge.value("a") is None
        lines = edge.log[mark:]
        assert sum('"event":"unreadable"' in line for line in lines) <= 2
        assert sum('"event":"resync"' in line for line in lines) <= 3
    finally:
        assert edge.stop() == 0


# -- URLs and their secrets (finding 13) -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://admin:s3cret@localhost:notaport",
        "rediz://admin:s3cret@localhost:6379",
        "redis://admin:s3cret@:6379",
    ],
)
def test_a_malformed_redis_url_is_refused_without_its_password(url: str) -> None:
    code, out, err = flagctl("status", "--redis", url, "--env", ENV)
    assert code == 2 and "bad Redis address" in err
    assert "s3cret" not in out + err and "***@" in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://admin:s3cret@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://:s3cret@host", "rediss://***@host"),
        ("redis+sentinel://u:s3cret@a:1,b:2/main", "redis+sentinel://***@a:1,b:2/main"),
        ("redis://host:6379?password=s3cret", "redis://host:6379?***"),
        ("admin:s3cret@host", "***@host"),
        ("redis://host:6379", "redis://host:6379"),
    ],
)
def test_an_address_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_serve_refuses_a_malformed_url_from_a_file_without_its_password(tmp_path: Path) -> None:
    secret = tmp_path / "redis-url"
    secret.write_text("redis://admin:s3cret@localhost:notaport\n")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "flagedge", "serve", "--env", ENV, "--port", "0"),
            *("--management-port=0", "--sync-port=off", "--ofrep-port=off"),
        ],
        env={**os.environ, "FLAGEDGE_REDIS_URL_FILE": str(secret)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "bad Redis address" in out.stderr
    assert "s3cret" not in out.stdout + out.stderr


def test_the_redis_url_can_come_from_a_file(redis_server: RedisServer, tmp_path: Path) -> None:
    secret = tmp_path / "redis-url"
    secret.write_text(redis_server.url + "\n")
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document(a="on")))
    code, _, err = flagctl("push", str(path), "--redis-url-file", str(secret), "--env", ENV)
    assert code == 0, err
    assert int(redis_server.client().get(KEYS.version)) == 1
    empty = tmp_path / "empty"
    empty.write_text("\n")
    code, _, err = flagctl("status", "--redis-url-file", str(empty), "--env", ENV)
    assert code == 2 and "is empty" in err


def test_the_redis_option_says_to_prefer_the_variable_or_the_file() -> None:
    code, out, _ = _help("serve")
    assert code == 0
    # argparse wraps help text, at spaces and hyphens alike
    assert "preferFLAGEDGE_REDIS_URLor--redis-url-file" in "".join(out.split())


def _help(command: str) -> tuple[int, str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "flagedge", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, out.stdout, out.stderr


# -- status with no edges (finding 15) ---------------------------------------------------------


def test_status_for_an_environment_no_edge_reports_is_not_converged(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push_file(redis_server, tmp_path, document(a="on"))
    code, out, _ = flagctl("status", "--redis", redis_server.url, "--env", "typo")
    assert code == 1
    assert "no edge reports for env 'typo'" in out and "converged" not in out
    code, out, _ = ctl(redis_server, "kill", "a", "--wait", "--timeout", "0.2")
    assert code == 1 and "no edge reports" in out


# -- the last-known-good file (finding 14) -----------------------------------------------------


def test_the_last_known_good_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "lkg.json"
    path.write_text("{}")
    path.chmod(0o644)  # an older file, too open: replaced by one that is not
    write_lkg(path, ENV, RawState(3, b'{"flags": {}}'))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "deeper" / "lkg.json"
    write_lkg(fresh, ENV, RawState(1, b"{}"))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
