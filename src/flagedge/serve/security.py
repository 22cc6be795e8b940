"""TLS and client identities for every listener of one server process.

    SecurityConfig (serve/config.py)
        ├─ grpc_credentials()   gRPC listeners: TLS (mutual with a client CA), certificates
        │                       re-read on change for new connections; None: plaintext
        ├─ ssl_context()        HTTP listeners: the same material as an ssl.SSLContext
        ├─ authorize(...)       a call's credentials -> Identity, or Unauthenticated /
        │                       PermissionDenied (errors.py; server/status.py maps them)
        └─ run()                every second: the auth file and the certificate files,
                                reloaded when they change (a broken file keeps the last good)

Every listener that exists and every one added later takes its TLS and its token checks
from here, so that one set of options secures them all. The management port stays
plaintext (probes) and never checks tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from pathlib import Path

import grpc

from ..auth import ANONYMOUS, AuthFile, Identity, Scope
from ..errors import PermissionDenied, Unauthenticated
from ..logs import event
from .config import SecurityConfig

log = logging.getLogger("flagedge.security")

CHECK_INTERVAL = 1.0  # seconds between looks at the auth and certificate files


def bearer(authorization: str | None) -> str | None:
    """The token of an ``authorization: Bearer TOKEN`` value; None when absent or malformed."""
    if not authorization:
        return None
    if authorization.startswith("Bearer "):
        # The form grpc's access-token credentials send, checked without splitting: this
        # runs on every call. (Other odd characters make an unknown token, refused later.)
        token = authorization[7:]
        if token and " " not in token:
            return token
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class _Certificates:
    """The certificate, key and client CA files, and their signatures when last read."""

    def __init__(self, config: SecurityConfig) -> None:
        assert config.server_cert_path and config.server_key_path
        self.cert_path = Path(config.server_cert_path)
        self.key_path = Path(config.server_key_path)
        self.ca_path = Path(config.client_ca_path) if config.client_ca_path else None
        self.generation = 0  # bumped on every successful re-read
        self._lock = threading.Lock()
        self._seen = self._signatures()
        self.chain, self.key, self.ca = self._read()

    def _paths(self) -> list[Path]:
        return [self.cert_path, self.key_path, *([self.ca_path] if self.ca_path else [])]

    def _signatures(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_signature(p) for p in self._paths())

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        chain, key = self.cert_path.read_bytes(), self.key_path.read_bytes()
        ca = self.ca_path.read_bytes() if self.ca_path else None
        # Check the pair before it is offered to anyone: a half-written rotation (the
        # certificate replaced, the key not yet) must not break new handshakes.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        probe.load_cert_chain(self.cert_path, self.key_path)
        return chain, key, ca

    def refresh(self) -> bool:
        """Re-read the files if any changed and they make a valid pair; True if so."""
        seen = self._signatures()
        if seen == self._seen or None in seen:
            return False
        try:
            material = self._read()
        except (OSError, ssl.SSLError, ValueError) as exc:
            # Keep the last good pair; look again next time (the other file may be on its way).
            log.warning("TLS files changed but do not load yet (%s); keeping the current ones", exc)
            return False
        with self._lock:
            self._seen = seen
            self.chain, self.key, self.ca = material
            self.generation += 1
        event(
            log,
            logging.INFO,
            "tls",
            "loaded a new TLS certificate from %s",
            self.cert_path,
            cert=str(self.cert_path),
        )
        return True


class Security:
    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.auth = AuthFile(Path(config.auth_file)) if config.auth_file else None
        self.certificates = _Certificates(config) if config.tls else None
        self._contexts: list[ssl.SSLContext] = []

    # -- identities ----------------------------------------------------------------------

    @property
    def checks_tokens(self) -> bool:
        return self.auth is not None

    def identify(self, authorization: str | None, api_key: str | None = None) -> Identity:
        """The caller behind ``authorization`` (``Bearer TOKEN``) or an API-key header;
        ANONYMOUS without an auth file. Unauthenticated: missing, malformed or unknown."""
        auth = self.auth
        if auth is None:
            return ANONYMOUS
        if authorization:
            token = bearer(authorization)
            if token is None:
                raise Unauthenticated("malformed")
        else:
            token = (api_key or "").strip() or None
            if token is None:
                raise Unauthenticated("missing")
        identity = auth.table.identify(token)
        if identity is None:
            raise Unauthenticated("unknown")
        return identity

    def authorize(
        self, scope: Scope, authorization: str | None, api_key: str | None = None
    ) -> Identity:
        """``identify``, then PermissionDenied unless the caller has ``scope``."""
        identity = self.identify(authorization, api_key)
        if scope not in identity.scopes:  # Identity.can, inline: every call comes here
            raise PermissionDenied
        return identity

    # -- TLS -----------------------------------------------------------------------------

    def grpc_credentials(self) -> grpc.ServerCredentials | None:
        """Server credentials for a gRPC listener (None: plaintext). New connections get a
        rotated certificate; open ones keep theirs."""
        certs = self.certificates
        if certs is None:
            return None

        def configuration() -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(certs.key, certs.chain)], root_certificates=certs.ca
            )

        served = certs.generation

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # grpc asks before each handshake, on its own thread: answer None (no change)
            # until the files were re-read.
            nonlocal served
            if certs.generation == served:
                return None
            served = certs.generation
            return configuration()

        return grpc.dynamic_ssl_server_credentials(
            configuration(),
            fetch,  # type: ignore[arg-type]  # grpc takes None as "no change"; the stubs do not
            require_client_authentication=certs.ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSLContext for an HTTP listener (None: plaintext), kept current on rotation."""
        certs = self.certificates
        if certs is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certs.cert_path, certs.key_path)
        if certs.ca_path is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(certs.ca_path))
        self._contexts.append(context)
        return context

    # -- reloading -----------------------------------------------------------------------

    def refresh(self) -> None:
        if self.auth is not None:
            self.auth.refresh()
        certs = self.certificates
        if certs is not None and certs.refresh():
            for context in self._contexts:  # affects new handshakes only
                with contextlib.suppress(OSError, ssl.SSLError):
                    context.load_cert_chain(certs.cert_path, certs.key_path)
                    if certs.ca_path is not None:
                        context.load_verify_locations(cafile=str(certs.ca_path))

    async def run(self) -> None:
        """Look at the files every CHECK_INTERVAL seconds, for the life of the process."""
        if self.auth is None and self.certificates is None:
            return
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # never stop serving over a file
                log.exception("could not re-read the auth or TLS files")
