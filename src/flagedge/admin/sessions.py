"""Who is asking: an API token, a web session, or a user named by a trusted SSO proxy; and
the web sessions themselves.

    Authorization: Bearer TOKEN     ─► the auth file's identity (auth.py); no CSRF needed:
                                       nothing ambient carries a bearer token
    cookie flagedge_session=ID      ─► Session(token kept here, CSRF token, expiry) ─► the
                                       token's identity *now* (a revoked token ends it)
    --trusted-user-header from a    ─► the auth file's identity of that name (its roles),
    --trusted-proxy address            else a viewer of that name

Session ids and CSRF tokens are 256-bit random; the cookie holds only the id. Sessions live
in this process (a restart logs everyone out) and expire after --session-ttl.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from ..auth import Identity, Role, Scope
from ..errors import Unauthenticated
from ..serve.security import Security, bearer

COOKIE = "flagedge_session"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    token: str  # never sent to the page; re-checked against the auth file on every request
    csrf: str
    expires: float


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: who, and how (a session needs a CSRF token to write)."""

    identity: Identity
    session: Session | None = None
    via: str = "token"  # token | session | proxy


class Sessions:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._by_id: dict[str, Session] = {}

    def create(self, token: str, now: float | None = None) -> Session:
        now = time.time() if now is None else now
        self._expire(now)
        session = Session(
            secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), now + self.ttl
        )
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None, now: float | None = None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires <= (time.time() if now is None else now):
            self._by_id.pop(session_id, None)
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)

    def _expire(self, now: float) -> None:
        if len(self._by_id) > 1000:
            for sid in [k for k, s in self._by_id.items() if s.expires <= now]:
                del self._by_id[sid]


class Identify:
    """Turns a request's credentials into a Caller (or Unauthenticated)."""

    def __init__(
        self,
        security: Security,
        sessions: Sessions,
        user_header: str | None,
        proxies: frozenset[str],
    ) -> None:
        self.security = security
        self.sessions = sessions
        self.user_header = user_header
        self.proxies = proxies
        # A proxy's user has no session here; the browser carries the proxy's own cookie,
        # so writes still need a CSRF token: this process's keyed hash of the user's name.
        self._proxy_key = secrets.token_bytes(32)

    def csrf(self, caller: Caller) -> str:
        if caller.session is not None:
            return caller.session.csrf
        if caller.via == "proxy":
            return hmac.new(self._proxy_key, caller.identity.name.encode(), "sha256").hexdigest()
        return ""

    def csrf_ok(self, caller: Caller, presented: str | None) -> bool:
        """Whether a write may go on: bearer tokens need nothing, the others a CSRF token."""
        if caller.via == "token":
            return True
        expected = self.csrf(caller)
        return bool(presented) and hmac.compare_digest(expected, presented or "")

    def token(self, token: str) -> Identity:
        auth = self.security.auth
        if auth is None:  # the service refuses to start without an auth file
            raise Unauthenticated
        identity = auth.table.identify(token)
        if identity is None:
            raise Unauthenticated
        return identity

    def caller(
        self,
        authorization: str | None,
        cookie: str | None,
        remote: str | None,
        headers: dict[str, str],
    ) -> Caller:
        if authorization:
            token = bearer(authorization)
            if token is None:
                raise Unauthenticated
            return Caller(self.token(token))
        session = self.sessions.get(cookie)
        if session is not None:
            try:
                return Caller(self.token(session.token), session, "session")
            except Unauthenticated:
                self.sessions.end(session.id)  # the token was revoked: so is the session
                raise
        if self.user_header and remote in self.proxies:
            user = headers.get(self.user_header.lower(), "").strip()
            if user:
                return Caller(self.proxy_identity(user), None, "proxy")
        raise Unauthenticated

    def proxy_identity(self, user: str) -> Identity:
        auth = self.security.auth
        if auth is not None:
            for identity in auth.table.identities:
                if identity.name == user:
                    return identity
        return Identity(user, frozenset[Scope](), frozenset({Role.VIEWER}))
