"""Client identities: an auth file names tokens by digest, with scopes, roles and flag
prefixes; a bad file is refused with every problem by path; `flagedge token new` prints a
token once and the entry that admits it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flagedge.auth import (
    ANONYMOUS,
    AuthFile,
    Role,
    Scope,
    TokenTable,
    digest,
    entry_for,
    new_token,
)
from flagedge.errors import DefinitionError


def table(*entries: dict[str, object]) -> TokenTable:
    return TokenTable.parse({"tokens": list(entries)})


def test_a_token_is_known_by_its_digest_and_carries_its_scopes_and_prefixes() -> None:
    token = new_token()
    t = table(entry_for("checkout", token, ["evaluate"], flags=["checkout-", "pricing-"]))
    who = t.identify(token)
    assert who is not None and who.name == "checkout"
    assert who.can(Scope.EVALUATE) and not who.can(Scope.SYNC)
    assert who.sees("checkout-v2") and who.sees("pricing-eu") and not who.sees("admin-panel")
    assert t.identify(token + "x") is None and t.identify("") is None


def test_a_token_is_at_least_256_bits_and_url_safe() -> None:
    token = new_token()
    assert len(token) >= 43 and all(c.isalnum() or c in "-_" for c in token)
    assert new_token() != token


def test_the_auth_file_holds_no_token_only_its_sha256() -> None:
    token = new_token()
    entry = entry_for("svc", token, ["sync"])
    assert token not in json.dumps(entry) and entry["sha256"] == digest(token)


def test_roles_include_the_ones_below_them() -> None:
    token = new_token()
    who = table(entry_for("ana", token, roles=["operator"])).identify(token)
    assert who is not None
    assert who.has_role(Role.VIEWER) and who.has_role(Role.OPERATOR)
    assert not who.has_role(Role.EDITOR) and not who.can(Scope.EVALUATE)


def test_without_an_auth_file_every_caller_may_do_everything() -> None:
    assert all(ANONYMOUS.can(s) for s in Scope) and ANONYMOUS.has_role(Role.EDITOR)
    assert ANONYMOUS.sees("anything")


def test_a_bad_auth_file_is_refused_with_every_problem_by_path() -> None:
    doc = {
        "tokens": [
            {"name": "a", "sha256": "zz", "scopes": ["evaluate"]},
            {"name": "b", "sha256": "0" * 64, "scopes": ["write"], "flags": "x-"},
            {"name": "a", "sha256": "1" * 64, "scopes": ["sync"], "colour": "red"},
            {"name": "c", "sha256": "2" * 64},
            "not an entry",
        ],
        "extra": 1,
    }
    with pytest.raises(DefinitionError) as caught:
        TokenTable.parse(doc)
    paths = {p.path for p in caught.value.problems}
    assert paths == {
        "",
        "tokens[0].sha256",
        "tokens[1].scopes[0]",
        "tokens[1].flags",
        "tokens[2]",
        "tokens[2].name",
        "tokens[3]",
        "tokens[4]",
    }


def test_a_changed_auth_file_is_reloaded_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    first, second = new_token(), new_token()
    path = tmp_path / "auth.yaml"
    path.write_text(json.dumps({"tokens": [entry_for("one", first, ["evaluate"])]}))
    auth = AuthFile(path)
    assert auth.table.identify(first) is not None and not auth.refresh()

    path.write_text(json.dumps({"tokens": [entry_for("two", second, ["evaluate"])]}))
    os.utime(path, ns=(1, 1))  # a new signature even within one mtime tick
    assert auth.refresh()
    assert auth.table.identify(first) is None and auth.table.identify(second) is not None

    path.write_text("tokens: [ {name: broken")
    os.utime(path, ns=(2, 2))
    assert not auth.refresh()
    assert auth.table.identify(second) is not None


def test_token_new_prints_a_token_once_and_the_entry_that_admits_it() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flagedge",
            "token",
            "new",
            "--name",
            "checkout-service",
            "--scope",
            "evaluate",
            "--flags",
            "checkout-",
            "pricing-",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(done.stdout)
    assert done.stdout.count(body["token"]) == 1  # the entry holds its digest, not the token
    who = TokenTable.parse({"tokens": [body["entry"]]}).identify(body["token"])
    assert who is not None and who.name == "checkout-service"
    assert who.flags == ("checkout-", "pricing-") and who.can(Scope.EVALUATE)


def test_token_new_without_a_scope_or_role_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flagedge", "token", "new", "--name", "x"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--scope or --role" in done.stderr
