"""The admin UI as a person uses it: a real Chromium (Debian's, driven by Playwright) against a
real ``flagedge admin``, a real redis-server and three real edges answering over gRPC.

Set FLAGEDGE_SCREENSHOTS=docs to have the run write the README's screenshots there."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import NAMES, PERMISSION_DOC, TOKENS, AdminProcess, Http, admin_stack
from tests.support.processes import Edge, edges
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENV = "prod"
XSS = "<script>alert(1)</script>"

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="no chromium (scripts/check installs it)"
    ),
]

playwright_sync = pytest.importorskip("playwright.sync_api")


def _document() -> dict[str, Any]:
    doc = copy.deepcopy(PERMISSION_DOC)
    doc["flags"][XSS] = {
        "state": "ENABLED",
        "variants": {XSS: "<b>bold</b>", "plain": "x"},
        "defaultVariant": XSS,
        "metadata": {"kind": "ops", "owner": "<img src=x onerror=alert(2)>"},
    }
    return doc


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RedisServer, AdminProcess, list[Edge]]]:
    directory = tmp_path_factory.mktemp("admin-ui")
    with contextlib.ExitStack() as stack:
        server, admin = stack.enter_context(admin_stack(directory, _document()))
        started = stack.enter_context(edges(server.url, ENV, directory, 3))
        yield server, admin, started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="flagedge-chromium-")
    with playwright_sync.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            viewport={"width": 1280, "height": 900},
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    browser.clear_cookies()
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    page.close()


def login(page: Any, admin: AdminProcess, role: str) -> None:
    page.goto(f"{admin.url}/login")
    page.fill('input[name="token"]', TOKENS[role])
    page.click('[data-action="login"]')
    page.wait_for_selector("[data-flag]")


def shoot(page: Any, name: str) -> None:
    target = os.environ.get("FLAGEDGE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"admin-{name}.png"), full_page=True)


def confirm(page: Any) -> None:
    """Confirm a write; the page reloads to show it (waited for, so that the next step
    acts on the new page, not the old one)."""
    with page.expect_navigation():
        page.locator('[data-action="confirm"]:visible').click()


def values(started: list[Edge], flag: str, context: dict[str, Any] | None = None) -> list[Any]:
    return [e.value(flag, context) for e in started]


def test_an_operator_kills_a_flag_sees_every_edge_converge_and_restores_it(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, started = stack
    assert values(started, "search-v2") == [True] * 3
    login(page, admin, "operator")
    shoot(page, "flags")
    page.click('[data-flag="search-v2"] a')
    page.click('[data-action="kill"]')
    page.select_option('select[name="variant"]', "off")
    confirm(page)
    # Each edge answers the new value over gRPC, and the page shows each one converging.
    wait_until("every edge to serve the kill", lambda: values(started, "search-v2") == [False] * 3)
    rows = page.locator("#converge tr[data-edge]")
    rows.first.wait_for()
    target = int(page.locator("#converge [data-target]").inner_text())
    wait_until(
        "the page to show three converged edges",
        lambda: page.locator('#converge tr[data-edge][data-converged="yes"]').count() == 3,
    )
    for i in range(3):
        assert int(rows.nth(i).get_attribute("data-version")) >= target
    assert "kill off" in page.locator("[data-override]").inner_text()
    shoot(page, "flag-killed")
    # The audit page names the logged-in identity.
    page.click('nav a:has-text("Audit")')
    first = page.locator("tr[data-audit]").first
    assert first.get_attribute("data-actor") == NAMES["operator"]
    assert first.get_attribute("data-action-name") == "kill"
    shoot(page, "audit")
    page.goto(f"{admin.url}/envs/{ENV}/flags/search-v2")
    page.click('[data-action="restore"]')
    confirm(page)
    wait_until(
        "every edge to serve the flag again", lambda: values(started, "search-v2") == [True] * 3
    )


def test_an_operator_steps_a_rollout(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, _started = stack
    login(page, admin, "operator")
    page.goto(f"{admin.url}/envs/{ENV}/flags/new-checkout")
    for step in ("25", "50"):
        page.click(f'button[data-step="{step}"]')
        assert page.input_value('input[name="percentage"]') == step
        page.click('[data-action="rollout"]')
        confirm(page)
        page.wait_for_selector('#notice:has-text("rollout new-checkout")')
    http = Http(admin.url)
    got = http.call("GET", f"/api/v1/envs/{ENV}/flags/new-checkout", token=TOKENS["viewer"])
    assert got.body["definition"]["targeting"]["fractional"] == [["on", 50], ["off", 50]]


def test_an_editor_adds_a_user_to_a_permission_toggle_and_their_evaluation_changes(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, started = stack
    user = {"targetingKey": "user-99"}
    assert values(started, "beta-access", user) == [False] * 3
    login(page, admin, "editor")
    page.goto(f"{admin.url}/envs/{ENV}/flags/beta-access")
    form = page.locator('form[data-list-path="targeting.if[0].in[1]"]')
    form.locator('input[name="add"]').fill("user-99")
    form.locator('[data-action="preview-list"]').click()
    diff = page.locator("#list-panel [data-diff]")
    diff.wait_for()
    assert '"user-99"' in diff.inner_text()
    shoot(page, "permission-diff")
    confirm(page)
    wait_until("the user to be in", lambda: values(started, "beta-access", user) == [True] * 3)
    # Try a context: the page explains which condition let them in.
    page.fill('textarea[name="context"]', '{"targetingKey": "user-99"}')
    page.click('[data-action="explain"]')
    page.wait_for_selector("[data-explain] .because")
    assert "user-99" in page.locator("[data-explain] .steps .matched").inner_text()
    shoot(page, "explain")


def test_an_editor_sees_validation_problems_by_path_before_anything_is_written(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, _started = stack
    login(page, admin, "editor")
    page.goto(f"{admin.url}/envs/{ENV}/flags/search-v2")
    version = page.get_attribute("#flag", "data-version")
    page.fill('textarea[name="definition"]', '{"state": "ON", "variants": {}}')
    page.click('[data-action="validate"]')
    problems = page.locator("#edit-panel [data-problems]")
    problems.wait_for()
    assert "flags.search-v2.state" in problems.inner_text()
    assert page.locator('#edit-panel [data-action="confirm"]').is_hidden()
    page.reload()
    assert page.get_attribute("#flag", "data-version") == version


def test_a_viewer_sees_no_write_buttons_and_the_api_refuses_the_session(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, _started = stack
    login(page, admin, "viewer")
    page.goto(f"{admin.url}/envs/{ENV}/flags/search-v2")
    for action in ("kill", "restore", "rollout", "validate"):
        assert page.locator(f'[data-action="{action}"]').count() == 0
    status = page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch('/api/v1/envs/prod/flags/search-v2/kill', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: '{}'});
            return r.status;
        }"""
    )
    assert status == 403


def test_flag_text_that_looks_like_markup_renders_as_text(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, _started = stack
    login(page, admin, "operator")
    row = page.locator("[data-flag]", has_text="<script>")
    assert row.get_attribute("data-flag") == XSS
    row.locator("a").click()
    page.wait_for_selector("#flag")
    assert page.locator("h1 .key").inner_text() == XSS
    assert page.locator(f'tr[data-variant="{XSS}"]').count() == 1
    assert page.locator("b", has_text="bold").count() == 0  # the variant's value is text
    page.click('[data-action="explain"]')
    page.wait_for_selector("[data-explain] .because")
    assert page.dialogs == []


def test_the_edges_page_lists_every_edge_with_its_version_live(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, started = stack
    login(page, admin, "operator")
    page.click('nav a:has-text("Edges")')
    wait_until("three edge rows", lambda: page.locator("#edges-live tr[data-edge]").count() == 3)
    before = int(page.locator("[data-redis-version]").inner_text())
    Http(admin.url).call(
        "POST", f"/api/v1/envs/{ENV}/flags/new-checkout/kill", {}, token=TOKENS["operator"]
    )
    wait_until(
        "the page to show the new version on every edge",
        lambda: all(
            int(page.locator("#edges-live tr[data-edge]").nth(i).get_attribute("data-version"))
            > before
            for i in range(3)
        ),
    )
    shoot(page, "edges")
    assert len({e.version() for e in started}) == 1  # all three on one version
    page.goto(f"{admin.url}/envs/{ENV}/stale?days=30")
    shoot(page, "stale")
    Http(admin.url).call(
        "POST", f"/api/v1/envs/{ENV}/flags/new-checkout/restore", {}, token=TOKENS["operator"]
    )


def test_the_content_security_policy_forbids_inline_script_and_style(
    stack: tuple[RedisServer, AdminProcess, list[Edge]], page: Any
) -> None:
    _server, admin, _started = stack
    response = page.goto(f"{admin.url}/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = page.content()
    assert "<script>" not in html and " style=" not in html
