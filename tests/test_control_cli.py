"""The ops commands of the Redis control plane (flagedge.cli.control): ``push`` validates
first and changes nothing when it refuses; ``kill --wait`` reaches every edge (and an
OpenFeature client of one) and prints each edge's apply time; ``status`` and ``audit``
report. A real redis-server, real edges, the real command line."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flagedge.store.plane import Keys
from tests.support.cli import flagctl
from tests.support.cli import push as push_to
from tests.support.documents import TOGGLES, document
from tests.support.processes import edges
from tests.support.redis_server import RedisServer

ENV = "test"
CHILD = Path(__file__).parent / "support" / "redis_openfeature_client.py"


def push(redis_server: RedisServer, tmp_path: Path, doc: dict[str, object]) -> int:
    return push_to(redis_server.url, ENV, tmp_path, doc)


def ctl(redis_server: RedisServer, *argv: str) -> tuple[int, str, str]:
    return flagctl(*argv, "--redis", redis_server.url, "--env", ENV)


def test_a_kill_through_the_cli_reaches_three_edges_and_an_openfeature_client(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(checkout="on", search="on"))
    with edges(redis_server.url, ENV, tmp_path, 3) as fleet:
        assert all(e.value("checkout") is True for e in fleet)
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(fleet[0].port), "checkout"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        try:
            before = json.loads(child.stdout.readline())
            assert (before["value"], before["reason"]) == (True, "STATIC")
            assert before["flushed"] == ["checkout", "search"]
            # The real command line, as ops would type it.
            kill = subprocess.run(
                [
                    *(sys.executable, "-m", "flagedge", "kill", "checkout", "--wait"),
                    *("--redis", redis_server.url, "--env", ENV, "--timeout", "30"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert kill.returncode == 0, kill.stderr
            after = json.loads(child.stdout.readline())
            assert child.wait(30) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        lines = kill.stdout.splitlines()
        assert lines[0] == f"kill checkout in env '{ENV}': version 2"
        assert len([line for line in lines if "applied in" in line and " ms" in line]) == 3
        assert after["changed"] == ["checkout"]
        assert (after["after"]["value"], after["after"]["reason"]) == (True, "DISABLED")
        for edge in fleet:
            result = edge.client.evaluate("checkout") if edge.client else None
            assert result is not None and result.reason == "DISABLED"
            assert edge.value("search") is True
        code, out, _ = ctl(redis_server, "status", "--json")
        status = json.loads(out)
        assert code == 0 and status["converged"] and len(status["edges"]) == 3


def test_a_push_of_an_invalid_file_changes_nothing_and_says_why(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on"))
    r = redis_server.client()
    keys = Keys(ENV)
    before = (r.get(keys.version), r.get(keys.definitions), r.xlen(keys.audit))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document(a="nowhere", b="on") | {"metadata": {"fractional": "v9"}}))
    code, _, err = ctl(redis_server, "push", str(bad))
    assert code == 2
    assert "nothing written" in err
    assert "flags.a.defaultVariant" in err and "metadata.fractional" in err
    bad.write_text("{ not json")
    code, _, err = ctl(redis_server, "push", str(bad))
    assert code == 2 and "invalid JSON" in err
    code, out, _ = ctl(redis_server, "kill", "a", "--variant", "maybe", "--json")
    assert code == 2 and json.loads(out)["problems"][0]["path"] == "overrides.a.variant"
    code, _, err = ctl(redis_server, "rollout", "a", "150")
    assert code == 2 and "percent" in err
    assert (r.get(keys.version), r.get(keys.definitions), r.xlen(keys.audit)) == before
    code, _, err = flagctl("status", "--redis", "redis://127.0.0.1:1", "--env", ENV)
    assert code == 3 and "unreachable" in err


def test_audit_shows_who_changed_what_filtered_by_flag(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(TOGGLES))

    def ctl(*argv: str) -> tuple[int, str, str]:
        actor = ("--actor", "ana@ops") if argv[0] in ("push", "kill", "restore") else ()
        return flagctl(*argv, "--redis", redis_server.url, "--env", ENV, *actor)

    assert ctl("push", str(path))[0] == 0
    assert ctl("kill", "stuck")[0] == 0
    assert ctl("kill", "mixed")[0] == 0
    assert ctl("restore", "stuck")[0] == 0
    code, out, _ = ctl("audit", "--flag", "stuck")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "ana@ops restore stuck" in lines[0] and "ana@ops kill stuck" in lines[1]
    assert lines[0][:4].isdigit() and "T" in lines[0].split()[0]  # an ISO time first
    code, out, _ = ctl("audit", "--json")
    entries = json.loads(out)["entries"]
    assert [e["action"] for e in entries] == ["restore", "kill", "kill", "push"]
    assert all(e["actor"] == "ana@ops" for e in entries)


def test_a_write_that_changes_nothing_says_so_and_writes_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    assert push(redis_server, tmp_path, document(a="on")) == 1
    code, out, _ = ctl(redis_server, "push", str(tmp_path / "flags.json"))
    assert (code, out) == (0, "definitions unchanged; nothing written\n")
    code, out, _ = ctl(redis_server, "restore", "a", "--json")
    assert code == 0
    assert json.loads(out) == {
        "ok": True,
        "changed": False,
        "message": "a has no override; nothing to restore",
    }
    with contextlib.closing(redis_server.client()) as r:
        assert r.get(Keys(ENV).version) == b"1"


def test_a_rollout_takes_a_percentage_with_or_without_its_sign(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    doc = document(plain="off", exp="off")
    doc["flags"]["exp"]["targeting"] = {"fractional": [["on", 5], ["off", 95]]}
    push(redis_server, tmp_path, doc)
    code, out, _ = ctl(redis_server, "rollout", "exp", "25%")
    assert code == 0 and out.startswith("rollout exp: on 25% (fractional weights)")
    code, out, _ = ctl(redis_server, "rollout", "plain", "10", "--json")
    assert code == 0 and json.loads(out)["action"] == "rollout"
    with pytest.raises(SystemExit) as usage:  # argparse's own refusal: exit 2
        ctl(redis_server, "rollout", "plain", "ten")
    assert usage.value.code == 2
    code, out, _ = ctl(redis_server, "audit", "--limit", "2")
    assert code == 0
    assert [line.split()[3:5] for line in out.splitlines()] == [
        ["rollout", "plain"],
        ["rollout", "exp"],
    ]
    assert '[["on",5],["off",95]] -> [["on",25],["off",75]]' in out


def test_get_shows_each_flag_with_its_override_even_a_corrupt_one(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on", b="off"))
    assert ctl(redis_server, "kill", "a")[0] == 0
    code, out, _ = ctl(redis_server, "get")
    assert code == 0
    assert out.splitlines() == [
        f"env '{ENV}' at version 2, 2 flag(s)",
        "  a: ENABLED, default on",
        '    override: {"kind":"kill"}',
        "  b: ENABLED, default off",
    ]
    code, out, _ = ctl(redis_server, "get", "a", "--json")
    assert json.loads(out)["flags"] == {
        "a": {
            "definition": document(a="on")["flags"]["a"],
            "override": {"kind": "kill"},
        }
    }
    with contextlib.closing(redis_server.client()) as r:
        r.hset(Keys(ENV).overrides, "b", b"garbage")
    code, out, _ = ctl(redis_server, "get", "b")
    assert code == 0 and '  override: {"corrupt":"garbage"}' in out.splitlines()
    code, _, err = ctl(redis_server, "get", "nope")
    assert code == 2 and "no flag named 'nope'" in err and "defined: a, b" in err


def test_status_with_no_live_edges_is_not_converged(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    push(redis_server, tmp_path, document(a="on"))
    code, out, _ = ctl(redis_server, "status", "--wait", "--timeout", "0.2")
    head = f"env '{ENV}': Redis at version 1; no edge reports for env '{ENV}'\n"
    assert (code, out) == (1, head)  # a typo in --env looks just like this
    code, out, _ = ctl(redis_server, "status", "--json")
    assert json.loads(out) == {"env": ENV, "version": 1, "converged": False, "edges": []}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ("get", "--env", ENV),
            "no Redis given: --redis URL, --redis-url-file or FLAGEDGE_REDIS_URL",
        ),
        (("get", "--redis", "redis://127.0.0.1:1"), "no environment given: --env NAME"),
        (("get", "--redis", "http://x", "--env", ENV), "bad Redis address: 'http://x' is not"),
    ],
)
def test_a_command_without_a_usable_redis_or_environment_is_refused(
    argv: tuple[str, ...], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("FLAGEDGE_REDIS_URL", "FLAGEDGE_ENV", "FLAGEDGE_SENTINEL", "FLAGEDGE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    code, out, err = flagctl(*argv)
    assert code == 2 and says in err and out == ""
    code, out, _ = flagctl(*argv, "--json")
    assert code == 2 and json.loads(out) == {
        "ok": False,
        "error": err.removeprefix("flagedge: ").strip(),
        "problems": [],
    }
