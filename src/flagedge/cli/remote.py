"""The control-plane commands through the admin service's API (``--admin URL``), so that an
ops laptop holds an API token instead of Redis credentials. Blocking (urllib): one request
per step, the same answers as cli/control.py's Redis path, the same exit codes (3 when the
admin service, or the Redis behind it, cannot be reached).

The actor of an audit entry is the token's identity: the service decides, not --actor.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from .. import config
from ..errors import ConfigError, Conflict, ExitCode, Problem, Refusal

TIMEOUT = 30.0


class Remote:
    """One admin service, one environment of it."""

    def __init__(self, url: str, token: str, env: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._context = ssl.create_default_context() if url.startswith("https:") else None
        if env is None:
            envs = self.call("GET", "/api/v1/envs")["envs"]
            if len(envs) != 1:
                raise ConfigError(
                    f"the admin service manages {', '.join(envs)}: say which with --env NAME"
                )
            env = str(envs[0])
        self.env = env

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context) as r:
                answer: dict[str, Any] = orjson.loads(r.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Refusal(
                f"the admin service at {self.url} is unreachable: {reason}", ExitCode.UNREACHABLE
            ) from None

    def env_path(self, tail: str) -> str:
        return f"/api/v1/envs/{urllib.parse.quote(self.env, safe='')}{tail}"

    def flag_path(self, flag: str, tail: str = "") -> str:
        return self.env_path(f"/flags/{urllib.parse.quote(flag, safe='')}{tail}")

    def explain(self, flag: str, context: dict[str, Any], now: int) -> dict[str, Any]:
        return self.call("POST", self.flag_path(flag, "/explain"), {"context": context, "now": now})


def _refusal(exc: urllib.error.HTTPError) -> Refusal:
    try:
        body = orjson.loads(exc.read())
    except (orjson.JSONDecodeError, OSError):
        body = {}
    message = str(body.get("error") or f"the admin service answered HTTP {exc.code}")
    problems = tuple(
        Problem(str(p.get("path", "")), str(p.get("message", "")))
        for p in body.get("problems") or ()
        if isinstance(p, dict)
    )
    if exc.code == 409:
        return Conflict(message, problems)
    if exc.code == 503:
        return Refusal(message, ExitCode.UNREACHABLE, problems)
    return Refusal(message, ExitCode.INVALID, problems)


def token_of(resolved: config.Settings) -> str:
    token = resolved["token"]
    if not token and resolved["token_file"]:
        try:
            token = Path(resolved["token_file"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"--token-file: cannot read {resolved['token_file']}: {exc}"
            ) from None
    if not token:
        raise ConfigError("--admin needs a token: FLAGEDGE_TOKEN, --token-file FILE or --token")
    return str(token)


def connect_remote(resolved: config.Settings) -> Remote:
    return Remote(resolved["admin"], token_of(resolved), resolved.get("env") or None)


def use_admin(resolved: config.Settings) -> bool:
    """Whether a command goes through the admin service: --admin (FLAGEDGE_ADMIN_URL) is
    set, and Redis was not named on the command line (a deliberate --redis beats the
    variable)."""
    if not resolved["admin"]:
        return False
    origin = resolved.origin
    redis_on_cli = "cli" in (origin.get("redis"), origin.get("redis_url_file"))
    return not (redis_on_cli and origin.get("admin") != "cli")
