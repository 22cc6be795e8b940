"""The admin service's JSON API against a real redis-server and a real ``flagedge admin``
process: roles, the audit's actor, the concurrent-edit check, validation by path, CSRF,
sessions, bad input, Redis down, and the OpenAPI document kept true."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagedge.admin.service import make_app
from tests.support.admin import NAMES, PERMISSION_DOC, TOKENS, AdminProcess, Http, admin_stack
from tests.support.redis_server import RedisServer
from tests.support.tls import certificates
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

ENV = "prod"
VIEWER, OPERATOR, EDITOR = TOKENS["viewer"], TOKENS["operator"], TOKENS["editor"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, AdminProcess]]:
    with admin_stack(tmp_path_factory.mktemp("admin-api")) as s:
        yield s


@pytest.fixture
def http(stack: tuple[RedisServer, AdminProcess]) -> Http:
    return Http(stack[1].url)


def flag_path(key: str, tail: str = "") -> str:
    return f"/api/v1/envs/{ENV}/flags/{key}{tail}"


def version(http: Http) -> int:
    return int(http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).body["version"])


def audit(http: Http, flag: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = http.call(
        "GET", f"/api/v1/envs/{ENV}/audit?flag={flag}", token=VIEWER
    ).body["entries"]
    return entries


# -- reads -------------------------------------------------------------------------------------


def test_a_viewer_lists_every_flag_with_kind_owner_state_and_typical_value(http: Http) -> None:
    got = http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER)
    assert got.status == 200
    rows = {r["key"]: r for r in got.body["flags"]}
    assert set(rows) >= set(PERMISSION_DOC["flags"])
    assert rows["beta-access"]["kind"] == "permission"
    assert rows["beta-access"]["owner"] == "support"
    assert rows["search-v2"]["typical"] == "true"
    kinds = http.call("GET", f"/api/v1/envs/{ENV}/flags?kind=ops", token=VIEWER).body["flags"]
    assert [r["key"] for r in kinds] == ["search-v2"]


def test_a_flag_reads_with_its_rule_in_words_and_its_editable_lists(http: Http) -> None:
    got = http.call("GET", flag_path("beta-access"), token=VIEWER).body
    assert got["rule"][0]["when"] == 'targetingKey is one of "user-1", "user-2"'
    paths = [entry["path"] for entry in got["lists"]]
    assert paths[:2] == ["targeting.if[0].in[1]", "targeting.if[2].in[1]"]
    assert got["lists"][2]["kind"] == "ends-with"


def test_no_token_is_401_and_an_unknown_token_too(http: Http) -> None:
    assert http.call("GET", f"/api/v1/envs/{ENV}/flags").status == 401
    assert http.call("GET", f"/api/v1/envs/{ENV}/flags", token="nope").status == 401


def test_an_unknown_environment_or_flag_is_404(http: Http) -> None:
    assert http.call("GET", "/api/v1/envs/staging/flags", token=VIEWER).status == 404
    assert http.call("GET", flag_path("no-such-flag"), token=VIEWER).status == 404


def test_explain_names_the_matching_condition(http: Http) -> None:
    got = http.call(
        "POST",
        flag_path("beta-access", "/explain"),
        {"context": {"plan": "enterprise"}},
        token=VIEWER,
    ).body
    assert got["variant"] == "on" and got["reason"] == "TARGETING_MATCH"
    assert got["matched"]["condition"] == 'plan is one of "enterprise"'


# -- writes and roles ------------------------------------------------------------------------


def test_a_viewer_cannot_write_and_nothing_is_audited(http: Http) -> None:
    before = audit(http, "search-v2")
    got = http.call("POST", flag_path("search-v2", "/kill"), {}, token=VIEWER)
    assert got.status == 403
    assert (
        http.call(
            "PUT", flag_path("search-v2"), {"definition": {}, "version": 1}, token=VIEWER
        ).status
        == 403
    )
    assert audit(http, "search-v2") == before


def test_an_operator_kills_and_restores_and_the_audit_names_the_token(http: Http) -> None:
    got = http.call("POST", flag_path("search-v2", "/kill"), {"variant": "off"}, token=OPERATOR)
    assert got.status == 200 and got.body["changed"] is True
    entry = audit(http, "search-v2")[0]
    assert (entry["actor"], entry["action"]) == (NAMES["operator"], "kill")
    row = next(
        r
        for r in http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).body["flags"]
        if r["key"] == "search-v2"
    )
    assert row["override"] == "killed (off)"
    got = http.call("POST", flag_path("search-v2", "/restore"), {}, token=OPERATOR)
    assert got.body["changed"] is True
    assert audit(http, "search-v2")[0]["action"] == "restore"


def test_an_operator_cannot_edit_definitions(http: Http) -> None:
    definition = http.call("GET", flag_path("search-v2"), token=VIEWER).body["definition"]
    body = {"definition": definition, "version": version(http)}
    assert http.call("PUT", flag_path("search-v2"), body, token=OPERATOR).status == 403


def test_a_rollout_steps_through_percentages(http: Http) -> None:
    for percent in (5, 25, 50):
        got = http.call(
            "POST", flag_path("new-checkout", "/rollout"), {"percent": percent}, token=OPERATOR
        )
        assert got.status == 200, got.body
    definition = http.call("GET", flag_path("new-checkout"), token=VIEWER).body["definition"]
    assert definition["targeting"]["fractional"] == [["on", 50], ["off", 50]]
    bad = http.call("POST", flag_path("new-checkout", "/rollout"), {"percent": 150}, token=OPERATOR)
    assert bad.status == 400 and bad.body["problems"][0]["path"] == "percent"


def test_an_editor_adds_a_user_to_a_permission_list_and_their_answer_changes(http: Http) -> None:
    ctx = {"context": {"targetingKey": "user-77"}}
    assert (
        http.call("POST", flag_path("beta-access", "/explain"), ctx, token=VIEWER).body["variant"]
        == "off"
    )
    edit = {"edits": [{"path": "targeting.if[0].in[1]", "add": ["user-77"]}]}
    preview = http.call("POST", flag_path("beta-access", "/validate"), edit, token=EDITOR).body
    assert preview["valid"] is True and re.search(r'^\+ +"user-77"$', preview["diff"], re.M)
    got = http.call(
        "POST", flag_path("beta-access", "/lists"), {**edit, "version": version(http)}, token=EDITOR
    )
    assert got.status == 200 and got.body["changed"] is True, got.body
    assert (
        http.call("POST", flag_path("beta-access", "/explain"), ctx, token=VIEWER).body["variant"]
        == "on"
    )
    assert audit(http, "beta-access")[0]["actor"] == NAMES["editor"]


def test_removing_a_value_that_is_not_there_is_refused_by_path(http: Http) -> None:
    edit = {
        "edits": [{"path": "targeting.if[0].in[1]", "remove": ["nobody"]}],
        "version": version(http),
    }
    got = http.call("POST", flag_path("beta-access", "/lists"), edit, token=EDITOR)
    assert got.status == 400
    assert got.body["problems"][0]["path"] == "edits[0].remove"


def test_an_invalid_definition_is_refused_with_every_problem_by_path_and_nothing_written(
    http: Http,
) -> None:
    before = version(http)
    hostile = {
        "state": "SOMETIMES",
        "variants": {"on": True, "off": "no"},
        "defaultVariant": "missing",
        "targeting": {"if": [{"no_such_op": [1]}, "on", "off"]},
    }
    check = http.call(
        "POST", flag_path("search-v2", "/validate"), {"definition": hostile}, token=EDITOR
    )
    assert check.body["valid"] is False
    paths = {p["path"] for p in check.body["problems"]}
    assert "flags.search-v2.state" in paths and "flags.search-v2.defaultVariant" in paths
    got = http.call(
        "PUT", flag_path("search-v2"), {"definition": hostile, "version": before}, token=EDITOR
    )
    assert got.status == 400 and len(got.body["problems"]) >= 2
    assert version(http) == before


def test_deeply_nested_and_non_object_definitions_are_refused_and_the_service_keeps_serving(
    http: Http,
) -> None:
    for depth in (300, 5000):  # past the rule depth limit; past the JSON parser's
        rule = '{"if": [true, ' * depth + '"on"' + ', "off"]}' * depth
        raw = (
            f'{{"version": {version(http)}, "definition": {{"state": "ENABLED", "variants": '
            f'{{"on": true, "off": false}}, "defaultVariant": "on", "targeting": {rule}}}}}'
        )
        got = http.call("PUT", flag_path("search-v2"), raw=raw.encode(), token=EDITOR)
        assert got.status == 400, got.text[:200]
    for definition in ([1, 2], "text", None):
        body = {"definition": definition, "version": version(http)}
        got = http.call("PUT", flag_path("search-v2"), body, token=EDITOR)
        assert got.status == 400, got.text[:200]
    assert http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).status == 200


def test_a_stale_edit_is_refused_with_a_clear_message_and_the_first_edit_is_kept(
    http: Http,
) -> None:
    seen = version(http)
    definition = http.call("GET", flag_path("search-v2"), token=VIEWER).body["definition"]
    first = {**definition, "metadata": {**definition["metadata"], "owner": "first-editor"}}
    second = {**definition, "metadata": {**definition["metadata"], "owner": "second-editor"}}
    ok = http.call(
        "PUT", flag_path("search-v2"), {"definition": first, "version": seen}, token=EDITOR
    )
    assert ok.status == 200
    stale = http.call(
        "PUT", flag_path("search-v2"), {"definition": second, "version": seen}, token=EDITOR
    )
    assert stale.status == 409
    assert "changed since version" in stale.body["error"] and NAMES["editor"] in stale.body["error"]
    now = http.call("GET", flag_path("search-v2"), token=VIEWER).body["definition"]
    assert now["metadata"]["owner"] == "first-editor"


def test_an_edit_of_another_flag_in_between_does_not_block_this_one(http: Http) -> None:
    seen = version(http)
    http.call("POST", flag_path("new-checkout", "/kill"), {}, token=OPERATOR)
    definition = http.call("GET", flag_path("search-v2"), token=VIEWER).body["definition"]
    changed = {**definition, "metadata": {**definition["metadata"], "owner": "later"}}
    got = http.call(
        "PUT", flag_path("search-v2"), {"definition": changed, "version": seen}, token=EDITOR
    )
    assert got.status == 200, got.body
    http.call("POST", flag_path("new-checkout", "/restore"), {}, token=OPERATOR)


def test_an_edit_without_a_version_is_refused(http: Http) -> None:
    definition = http.call("GET", flag_path("search-v2"), token=VIEWER).body["definition"]
    got = http.call("PUT", flag_path("search-v2"), {"definition": definition}, token=EDITOR)
    assert got.status == 400 and got.body["problems"][0]["path"] == "version"


def test_bad_json_and_oversized_bodies_are_refused(http: Http) -> None:
    got = http.call("POST", flag_path("search-v2", "/kill"), raw=b"{not json", token=OPERATOR)
    assert got.status == 400
    huge = b'{"definitions": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    got = http.call("PUT", f"/api/v1/envs/{ENV}/definitions", raw=huge, token=EDITOR)
    assert got.status == 413
    assert http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).status == 200


# -- browser sessions --------------------------------------------------------------------------


def _csrf(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', page)
    assert found is not None
    return found.group(1)


def test_a_session_cookie_is_httponly_and_strict_and_writes_need_its_csrf_token(
    stack: tuple[RedisServer, AdminProcess],
) -> None:
    browser = Http(stack[1].url)
    login = browser.login(OPERATOR)
    assert login.status == 303
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    page = browser.call("GET", f"/envs/{ENV}/flags")
    assert page.status == 200 and OPERATOR not in page.text  # no secret on the page
    no_csrf = browser.call("POST", flag_path("search-v2", "/kill"), {})
    assert no_csrf.status == 403 and "CSRF" in no_csrf.body["error"]
    wrong = browser.call("POST", flag_path("search-v2", "/kill"), {}, headers={"X-CSRF-Token": "x"})
    assert wrong.status == 403
    token = _csrf(page.text)
    ok = browser.call(
        "POST", flag_path("search-v2", "/restore"), {}, headers={"X-CSRF-Token": token}
    )
    assert ok.status == 200


def test_a_bad_login_is_refused_and_a_cross_site_login_too(http: Http) -> None:
    assert http.login("wrong").status == 401
    cross = http.call(
        "POST",
        "/login",
        raw=f"token={VIEWER}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.test"},
    )
    assert cross.status == 403


def test_logging_out_ends_the_session(stack: tuple[RedisServer, AdminProcess]) -> None:
    browser = Http(stack[1].url)
    browser.login(VIEWER)
    page = browser.call("GET", f"/envs/{ENV}/flags")
    csrf = _csrf(page.text)
    out = browser.call(
        "POST",
        "/logout",
        raw=f"csrf={csrf}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": stack[1].url},
    )
    assert out.status == 303
    assert browser.call("GET", f"/envs/{ENV}/flags").status == 303  # to the login page
    assert browser.call("GET", f"/api/v1/envs/{ENV}/flags").status == 401


def test_sessions_expire(tmp_path: Path) -> None:
    with admin_stack(tmp_path, extra=("--session-ttl=1",)) as (_server, admin):
        browser = Http(admin.url)
        browser.login(VIEWER)
        assert browser.call("GET", f"/api/v1/envs/{ENV}/flags").status == 200
        time.sleep(1.2)
        assert browser.call("GET", f"/api/v1/envs/{ENV}/flags").status == 401
        page = browser.call("GET", f"/envs/{ENV}/flags")
        assert page.status == 303 and page.headers["Location"] == "/login"


def test_a_trusted_proxy_names_the_user_and_others_cannot(tmp_path: Path) -> None:
    extra = ("--trusted-user-header=X-Forwarded-User", "--trusted-proxy=127.0.0.1")
    with admin_stack(tmp_path, extra=extra) as (_server, admin):
        http = Http(admin.url)
        who = http.call("GET", "/api/v1/whoami", headers={"X-Forwarded-User": NAMES["operator"]})
        assert (
            who.status == 200 and who.body["roles"] == ["operator"] and who.body["via"] == "proxy"
        )
        stranger = http.call("GET", "/api/v1/whoami", headers={"X-Forwarded-User": "sam"})
        assert stranger.body["roles"] == ["viewer"]
        # A proxied user's write still needs the page's CSRF token.
        kill = http.call(
            "POST",
            flag_path("search-v2", "/kill"),
            {},
            headers={"X-Forwarded-User": NAMES["operator"]},
        )
        assert kill.status == 403
    with admin_stack(tmp_path / "untrusted") as (_server, admin):
        http = Http(admin.url)
        got = http.call("GET", "/api/v1/whoami", headers={"X-Forwarded-User": NAMES["operator"]})
        assert got.status == 401


# -- Redis down ----------------------------------------------------------------------------------


def test_with_redis_down_reads_show_the_last_state_marked_stale_and_writes_are_refused(
    tmp_path: Path,
) -> None:
    with admin_stack(tmp_path) as (server, admin):
        http = Http(admin.url)
        seen = http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).body
        server.kill()
        got = wait_until(
            "a stale answer",
            lambda: (
                (a := http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER)).body["stale"]
                and a
            ),
        )
        assert got.status == 200 and got.body["version"] == seen["version"]
        assert "unreachable" in got.body["error"]
        write = http.call("POST", flag_path("search-v2", "/kill"), {}, token=OPERATOR)
        assert write.status == 503 and "nothing was written" in write.body["error"]
        browser = Http(admin.url)
        browser.login(VIEWER)
        page = browser.call("GET", f"/envs/{ENV}/flags")
        assert page.status == 200 and "Redis is unreachable" in page.text
        assert "Writes are refused" in page.text
        server.start()
        wait_until(
            "fresh again",
            lambda: not http.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).body["stale"],
        )


# -- the OpenAPI document ------------------------------------------------------------------------


def _routes() -> set[tuple[str, str]]:
    from flagedge.admin.service import AdminConfig, Service
    from flagedge.serve.config import SecurityConfig

    cfg = AdminConfig(
        host="127.0.0.1",
        port=0,
        envs=("x",),
        redis="redis://127.0.0.1:1",
        sentinel=None,
        sentinel_master=None,
        sentinel_password=None,
        security=SecurityConfig(),
        trusted_user_header=None,
        trusted_proxies=(),
        session_ttl=60,
        max_body=1024,
    )
    app = make_app(Service(cfg))
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or ""
        if path.startswith("/api/") and route.method in ("GET", "POST", "PUT", "DELETE"):
            out.add((route.method.lower(), path))
    return out


def test_every_api_route_is_in_the_openapi_document_and_every_documented_one_exists(
    http: Http,
) -> None:
    spec = http.call("GET", "/api/v1/openapi.json").body
    assert spec["openapi"].startswith("3.")
    documented = {(m, p) for p, item in spec["paths"].items() for m in item}
    assert documented == _routes()


def test_every_documented_route_answers(http: Http) -> None:
    spec = http.call("GET", "/api/v1/openapi.json").body
    for path, item in spec["paths"].items():
        concrete = path.replace("{env}", ENV).replace("{flag}", "search-v2")
        for method in item:
            if concrete.endswith("/edges/stream"):
                continue  # an endless stream; the browser test reads it
            body: Any = {}
            if method == "put" and concrete.endswith("/definitions"):
                body = {"definitions": PERMISSION_DOC}
            got = http.call(
                method.upper(), concrete, body if method != "get" else None, token=VIEWER
            )
            documented = set(item[method]["responses"]) | {"401"}
            assert str(got.status) in documented, (method, path, got.status, got.text[:200])
            assert got.status not in (404, 405, 500), (method, path, got.status)


def test_the_openapi_file_is_valid_json_with_every_write_documenting_403_and_409() -> None:
    spec_path = Path(__file__).resolve().parents[1] / "src/flagedge/admin/openapi.json"
    spec = json.loads(spec_path.read_text())
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("put",) or path.endswith(("/kill", "/restore", "/rollout", "/lists")):
                assert {"403", "409", "503"} <= set(op["responses"]), (method, path)


# -- TLS -------------------------------------------------------------------------------------


def test_with_a_certificate_the_service_speaks_https_only_and_the_cookie_is_secure(
    tmp_path: Path,
) -> None:
    import urllib.error
    import urllib.request

    ca, cert, key = certificates(tmp_path / "certs")
    extra = (f"--server-cert-path={cert}", f"--server-key-path={key}")
    with admin_stack(tmp_path, extra=extra) as (_server, admin):
        assert admin.url.startswith("https://")
        https = Http(admin.url, cafile=ca)
        assert https.call("GET", f"/api/v1/envs/{ENV}/flags", token=VIEWER).status == 200
        login = https.login(VIEWER)
        assert login.status == 303 and "Secure" in login.headers["Set-Cookie"]
        assert "max-age" in https.call("GET", "/login").headers["Strict-Transport-Security"]
        plain = f"http://127.0.0.1:{admin.port}/login"
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(plain, timeout=5).read()
