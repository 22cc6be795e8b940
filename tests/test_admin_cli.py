"""The ``flagedge`` control commands through the admin service (--admin URL, a token):
the same output and exit codes as through Redis, the token's identity in the audit, exit 3
when the service cannot be reached; ``flagedge explain``; ``flagedge admin``'s settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.admin import NAMES, PERMISSION_DOC, TOKENS, AdminProcess, admin_stack
from tests.support.cli import flagctl
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)
ENV = "prod"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, AdminProcess]]:
    with admin_stack(tmp_path_factory.mktemp("admin-cli")) as s:
        yield s


@pytest.fixture
def through(
    stack: tuple[RedisServer, AdminProcess], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """The environment variables an ops laptop has: the admin URL and a token, no Redis."""
    for name in ("FLAGEDGE_REDIS_URL", "FLAGEDGE_ENV", "FLAGEDGE_TOKEN", "FLAGEDGE_ADMIN_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLAGEDGE_ADMIN_URL", stack[1].url)
    monkeypatch.setenv("FLAGEDGE_TOKEN", TOKENS["operator"])
    return stack[0].url, stack[1].url


def direct(redis_url: str, *argv: str) -> tuple[int, str, str]:
    return flagctl(*argv, f"--redis={redis_url}", f"--env={ENV}")


def test_kill_and_restore_through_the_admin_service_print_what_redis_would(
    through: tuple[str, str],
) -> None:
    code, out, err = flagctl("kill", "search-v2", "--variant", "off")
    assert code == 0, err
    assert out.startswith(f"kill search-v2 in env '{ENV}': version ")
    code, out, _ = flagctl("restore", "search-v2")
    assert code == 0 and out.startswith(f"restore search-v2 in env '{ENV}'")
    code, out, _ = flagctl("restore", "search-v2")
    assert (code, out.strip()) == (0, "search-v2 has no override; nothing to restore")
    # The audit names the token's holder, whatever --actor says.
    code, out, _ = flagctl("audit", "--flag", "search-v2", "--json")
    entries = json.loads(out)["entries"]
    assert [e["actor"] for e in entries[:2]] == [NAMES["operator"]] * 2


def test_get_status_and_audit_match_the_redis_path(through: tuple[str, str]) -> None:
    redis_url, _ = through
    for argv in (("get",), ("get", "beta-access"), ("audit", "--limit", "5"), ("status",)):
        remote = flagctl(*argv, "--json")
        os.environ.pop("FLAGEDGE_ADMIN_URL")
        try:
            local = direct(redis_url, *argv, "--json")
        finally:
            os.environ["FLAGEDGE_ADMIN_URL"] = through[1]
        assert remote[0] == local[0], argv
        assert json.loads(remote[1]) == json.loads(local[1]), argv


def test_kill_with_wait_reports_convergence_through_the_service(
    through: tuple[str, str],
) -> None:
    code, out, _ = flagctl("kill", "new-checkout", "--wait", "--timeout", "0.5", "--json")
    body = json.loads(out)
    # no live edge in this test: as through Redis, nothing confirmed the kill (exit 1)
    assert (code, body["converged"], body["edges"]) == (1, False, [])
    assert body["version"] >= 1
    flagctl("restore", "new-checkout")


def test_rollout_and_push_through_the_service(
    through: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = flagctl("rollout", "new-checkout", "25")
    assert code == 0 and "rollout new-checkout" in out
    # push needs the editor role: the operator's token is refused, exit 2, nothing written
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(PERMISSION_DOC))
    code, _, err = flagctl("push", str(source), "--force")
    assert code == 2 and "lacks the editor role" in err
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["editor"] + "\n")
    monkeypatch.delenv("FLAGEDGE_TOKEN")
    code, out, err = flagctl("push", str(source), "--force", f"--token-file={token_file}")
    assert code == 0, err
    assert "pushed definitions" in out


def test_a_refused_change_lists_its_problems_and_exits_2(through: tuple[str, str]) -> None:
    code, _, err = flagctl("kill", "search-v2", "--variant", "purple")
    assert code == 2
    assert "overrides.search-v2.variant" in err or "purple" in err
    code, _, err = flagctl("kill", "no-such-flag")
    assert code == 2 and "no-such-flag" in err


def test_stale_through_the_service(through: tuple[str, str]) -> None:
    code, out, _ = flagctl("stale", "--today", "2100-01-01")
    assert code == 0
    assert "new-checkout" in out and "release toggle expired" in out


def test_an_unreachable_admin_service_is_exit_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGEDGE_ADMIN_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("FLAGEDGE_TOKEN", "whatever")
    monkeypatch.setenv("FLAGEDGE_ENV", ENV)
    code, _, err = flagctl("kill", "x")
    assert code == 3 and "unreachable" in err
    code, _, err = flagctl("status")
    assert code == 3


def test_admin_url_without_a_token_is_a_clear_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAGEDGE_TOKEN", raising=False)
    code, _, err = flagctl("status", "--admin", "http://127.0.0.1:1")
    assert code == 2 and "needs a token" in err


def test_a_wrong_token_is_refused(through: tuple[str, str]) -> None:
    code, _, err = flagctl("status", "--token", "not-a-token")
    assert code == 2 and "log in" in err


# -- flagedge explain ----------------------------------------------------------------------------


def test_explain_on_a_file_names_the_condition_that_matched(tmp_path: Path) -> None:
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(PERMISSION_DOC))
    code, out, _ = flagctl(
        "explain", "beta-access", "--flags", str(source), "--context", '{"plan": "enterprise"}'
    )
    assert code == 0
    assert out.splitlines()[0] == "beta-access: true, variant on, reason TARGETING_MATCH"
    assert 'MATCHED  plan is one of "enterprise"' in out


def test_explain_shows_the_bucket_of_a_split(tmp_path: Path) -> None:
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(PERMISSION_DOC))
    code, out, _ = flagctl(
        "explain", "new-checkout", "--flags", str(source), "--context", '{"targetingKey": "u1"}',
        "--json",
    )  # fmt: skip
    assert code == 0
    body = json.loads(out)
    (bucket,) = body["buckets"]
    assert bucket["total"] == 100 and 0 <= bucket["bucket"] < 100
    assert bucket["chosen"] == body["variant"]


def test_explain_through_the_admin_service_matches_the_file(
    through: tuple[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(PERMISSION_DOC))
    args = ("explain", "beta-access", "--context", '{"targetingKey": "user-2"}', "--now", "1")
    remote = json.loads(flagctl(*args, "--json")[1])
    local = json.loads(flagctl(*args, "--json", "--flags", str(source))[1])
    for key in ("value", "variant", "reason", "matched"):
        assert remote[key] == local[key]


def test_explain_refuses_a_context_that_is_not_json(tmp_path: Path) -> None:
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(PERMISSION_DOC))
    code, _, err = flagctl("explain", "beta-access", "--flags", str(source), "--context", "{x")
    assert code == 2 and "--context" in err


# -- flagedge admin's own settings -------------------------------------------------------------


def _admin(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagedge", "admin", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_admin_refuses_to_start_without_an_auth_file_or_an_environment(tmp_path: Path) -> None:
    base = {"FLAGEDGE_REDIS_URL": "redis://127.0.0.1:1", "FLAGEDGE_ENV": ""}
    got = _admin("--env", "prod", env=base)
    assert got.returncode == 2 and "--auth-file" in got.stderr
    auth = tmp_path / "auth.json"
    auth.write_text('{"tokens": []}')
    got = _admin(f"--auth-file={auth}", env=base)
    assert got.returncode == 2 and "no environment" in got.stderr


def test_admin_takes_several_environments_from_the_variable(
    stack: tuple[RedisServer, AdminProcess], tmp_path: Path
) -> None:
    from tests.support.admin import Http, write_auth_file

    auth = write_auth_file(tmp_path / "auth.json")
    process = subprocess.Popen(
        [sys.executable, "-m", "flagedge", "admin", "--port=0", f"--auth-file={auth}",
         "--log-format=text"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FLAGEDGE_REDIS_URL": stack[0].url, "FLAGEDGE_ENV": "prod, staging"},
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "env(s) prod, staging" in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        envs = Http(f"http://127.0.0.1:{port}").call("GET", "/api/v1/envs", token=TOKENS["viewer"])
        assert envs.body["envs"] == ["prod", "staging"]
    finally:
        process.terminate()
        process.wait(20)
        if process.stderr is not None:
            process.stderr.close()


def test_token_new_adds_its_entry_to_an_auth_file_and_saves_the_token_privately(
    tmp_path: Path,
) -> None:
    auth, saved = tmp_path / "auth.json", tmp_path / "alice.token"
    code, out, _ = flagctl(
        "token", "new", "--name", "alice", "--role", "editor", "--add-to", str(auth),
        "--save", str(saved),
    )  # fmt: skip
    assert code == 0
    token = saved.read_text().strip()
    assert token not in out and saved.stat().st_mode & 0o077 == 0
    from flagedge.auth import load_table

    identity = load_table(auth).identify(token)
    assert identity is not None and identity.name == "alice"
    code, _, err = flagctl(
        "token", "new", "--name", "alice", "--role", "viewer", "--add-to", str(auth)
    )
    assert code == 2 and "used twice" in err
    assert len(json.loads(auth.read_text())["tokens"]) == 1


def test_a_redis_named_on_the_command_line_beats_the_admin_variable(
    through: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url, _ = through
    monkeypatch.setenv("FLAGEDGE_TOKEN", "not-a-token")  # would be refused by the service
    code, out, err = flagctl("status", f"--redis={redis_url}", f"--env={ENV}")
    assert code == 1, err  # no live edge here: not converged, but answered by Redis
    assert out.startswith(f"env '{ENV}': Redis at version")
