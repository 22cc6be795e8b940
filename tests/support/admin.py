"""The admin service's tests' parts: ``flagedge admin`` as a child process on a free port,
an auth file with a token per role, a small HTTP caller (urllib: no mocks) and a whole stack
(redis-server, pushed flags, the admin). Edges come from tests.support.processes."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagedge.auth import entry_for
from tests.support.cli import flagctl
from tests.support.processes import LoggedProcess
from tests.support.redis_server import RedisServer

LISTENING = re.compile(r"admin service on (https?)://[^:]+:(\d+)")

TOKENS = {
    "viewer": "viewer-token-0123456789abcdef",
    "operator": "operator-token-0123456789abcdef",
    "editor": "editor-token-0123456789abcdef",
}
NAMES = {"viewer": "vera-viewer", "operator": "otto-operator", "editor": "erin-editor"}

PERMISSION_DOC: dict[str, Any] = {
    "flags": {
        "beta-access": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {
                "if": [
                    {"in": [{"var": "targetingKey"}, ["user-1", "user-2"]]},
                    "on",
                    {"in": [{"var": "plan"}, ["enterprise"]]},
                    "on",
                    {"or": [{"ends_with": [{"var": "email"}, "@flagedge.dev"]}]},
                    "on",
                    "off",
                ]
            },
            "metadata": {"kind": "permission", "owner": "support"},
        },
        "new-checkout": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 5], ["off", 95]]},
            "metadata": {"kind": "release", "owner": "checkout", "expires": "2099-01-01"},
        },
        "search-v2": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "ops", "owner": "search"},
        },
    }
}


def write_auth_file(path: Path) -> Path:
    entries = [entry_for(NAMES[role], token, roles=[role]) for role, token in TOKENS.items()]
    path.write_text(json.dumps({"tokens": entries}))
    return path


class AdminProcess(LoggedProcess):
    """A ``flagedge admin`` child; its log lines are kept."""

    stop_wait = 20.0

    def __init__(self, redis_url: str, envs: list[str], auth: Path, *extra: str) -> None:
        super().__init__(
            [
                sys.executable,
                "-m",
                "flagedge",
                "admin",
                "--host=127.0.0.1",
                "--port=0",
                f"--redis={redis_url}",
                *(f"--env={e}" for e in envs),
                f"--auth-file={auth}",
                "--log-format=text",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        self.port = 0
        self.scheme = "http"

    def wait_listening(self, timeout: float = 30.0) -> AdminProcess:
        found = self.wait_log(LISTENING, timeout)
        self.scheme, self.port = found.group(1), int(found.group(2))
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""


class Http:
    """Requests to one admin service, optionally with a cookie jar (a browser-like session)."""

    def __init__(self, base: str, *, cafile: Path | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=context),
            _NoRedirect(),
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(request, timeout=30) as r:
                return _answer(r.status, r.read(), dict(r.headers))
        except urllib.error.HTTPError as exc:
            return _answer(exc.code, exc.read(), dict(exc.headers))

    def login(self, token: str) -> Answer:
        return self.call(
            "POST",
            "/login",
            raw=f"token={token}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.base},
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _answer(status: int, raw: bytes, headers: dict[str, str]) -> Answer:
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    return Answer(status, body, headers, text)


@contextlib.contextmanager
def admin_stack(
    directory: Path,
    document: dict[str, Any] | None = None,
    envs: tuple[str, ...] = ("prod",),
    extra: tuple[str, ...] = (),
) -> Iterator[tuple[RedisServer, AdminProcess]]:
    """A redis-server with ``document`` pushed to every env, and an admin service on it."""
    server = RedisServer(directory / "redis").start()
    admin: AdminProcess | None = None
    try:
        source = directory / "flags.json"
        source.write_text(json.dumps(document or PERMISSION_DOC))
        for env in envs:
            code, _out, err = flagctl(
                "push", str(source), f"--redis={server.url}", f"--env={env}", "--actor=seed"
            )
            assert code == 0, err
        auth = write_auth_file(directory / "auth.json")
        admin = AdminProcess(server.url, list(envs), auth, *extra).wait_listening()
        yield server, admin
    finally:
        if admin is not None:
            admin.stop()
        server.kill()


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
