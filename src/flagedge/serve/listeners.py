"""What a server process listens on: the Listener seam.

    Listener.start(context)   bind (port 0 picks one: ``port`` then says which) and serve
    Listener.stop(grace)      stop taking calls, let in-flight ones finish within ``grace``

    GrpcListener         flagedge.v1 + flagd evaluation v1/v2, health, reflection (server/);
                         TLS and the token check (scope evaluate) from the Security; with
                         --socket-path also a plaintext Unix socket (worker 0 only: a path
                         cannot be shared the way SO_REUSEPORT shares a port)
    ManagementListener   /healthz, /readyz, /metrics; starts first and stops last, so probes
                         answer while definitions load and while calls drain; plaintext and
                         open (probes), on --management-host when given
    SyncListener         flagd.sync.v1 for in-process providers, health, reflection, on a
                         gRPC server of its own (--sync-port; off: none); the same TLS, and
                         the token check with scope sync
    HttpListener         OFREP and flagd's evaluation service over Connect JSON, on
                         --ofrep-port (0: off), with TLS and token checks from Security

Every listener reads the same ServeContext: one SnapshotHolder, one ServerMetrics, the
Source, the Security (TLS material and token checks: serve/security.py) and a readiness
check. A new front door (OFREP, admin) is one more class here with a factory in
``LISTENERS``; it takes its TLS (``Security.grpc_credentials()`` or ``ssl_context()``) and
its token check (``Security.authorize`` with its scope) from the Security, so that one set
of options secures every port. The others do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..auth import Identity, Scope
from ..metrics import ServerMetrics
from ..server.caller import counted
from ..server.http import HttpLimits
from ..server.management import ManagementServer, start_management
from ..server.rpc import RunningServer, RunningSyncServer, start_server, start_sync_server
from ..server.web import RunningHttp, start_http
from ..snapshot import SnapshotHolder
from .config import ServeConfig
from .security import Security
from .sources import Source


@dataclass(slots=True)
class ServeContext:
    config: ServeConfig
    holder: SnapshotHolder
    metrics: ServerMetrics
    source: Source
    security: Security
    server_id: str
    ready: Callable[[], bool]  # every listener started and a snapshot serving
    details: Callable[[], Mapping[str, object]]  # what /readyz adds


class Listener(Protocol):
    name: str  # "gRPC", "management", ...: how logs name it
    early: bool  # started before the source loads (probes), stopped last
    host: str
    port: int

    async def start(self, context: ServeContext) -> None: ...

    async def stop(self, grace: float) -> None: ...


class _Bound(Protocol):
    port: int


S = TypeVar("S", bound=_Bound)


class _OneServer(Generic[S]):
    """A listener over one server: ``_serve`` starts it (``running``, None until then) and
    ``_stop`` stops it; ``port`` is the bound port once it started."""

    early = False

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.running: S | None = None

    async def start(self, context: ServeContext) -> None:
        self.running = await self._serve(context)
        self.port = self.running.port

    async def stop(self, grace: float) -> None:
        if self.running is not None:
            await self._stop(self.running, grace)

    async def _serve(self, context: ServeContext) -> S:
        raise NotImplementedError

    async def _stop(self, running: S, grace: float) -> None:
        raise NotImplementedError


class GrpcListener(_OneServer[RunningServer]):
    name = "gRPC"

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.socket_path: str | None = None

    async def _serve(self, context: ServeContext) -> RunningServer:
        config = context.config
        security = context.security
        socket_path = config.security.socket_path
        if config.worker_index != "0":
            socket_path = None
        running = await start_server(
            context.holder,
            self.host,
            self.port,
            source=context.source.name,
            reuse_port=config.worker,
            server_id=context.server_id,
            metrics=context.metrics,
            stream_deadline=config.stream_deadline,
            credentials=security.grpc_credentials(),
            authorize=security.authorize if security.checks_tokens else None,
            max_streams_per_token=config.security.max_streams_per_token,
            socket_path=socket_path,
            socket_mode=int(config.security.socket_mode, 8),
            limits=config.limits,
        )
        self.socket_path = socket_path
        return running

    async def _stop(self, running: RunningServer, grace: float) -> None:
        await running.stop(grace)


class ManagementListener(_OneServer[ManagementServer]):
    name = "management"
    early = True

    async def _serve(self, context: ServeContext) -> ManagementServer:
        return await start_management(
            self.host,
            self.port,
            context.ready,
            reuse_port=context.config.worker,
            details=context.details,
            metrics=context.metrics.exposition,
            negotiate=context.metrics.negotiated,
        )

    async def _stop(self, running: ManagementServer, grace: float) -> None:
        await running.close()


class SyncListener(_OneServer[RunningSyncServer]):
    name = "sync"

    async def _serve(self, context: ServeContext) -> RunningSyncServer:
        config = context.config
        security = context.security
        return await start_sync_server(
            context.holder,
            self.host,
            self.port,
            source=context.source.name,
            stream_deadline=config.stream_deadline,
            reuse_port=config.worker,
            metrics=context.metrics,
            credentials=security.grpc_credentials(),
            authorize=security.authorize if security.checks_tokens else None,
            max_streams_per_token=config.security.max_streams_per_token,
        )

    async def _stop(self, running: RunningSyncServer, grace: float) -> None:
        await running.stop(grace)


class HttpListener(_OneServer[RunningHttp]):
    """OFREP (and Connect) over HTTP: tokens and TLS as every listener takes them."""

    name = "OFREP"

    async def _serve(self, context: ServeContext) -> RunningHttp:
        config = context.config
        security = context.security

        def authorize(authorization: str | None, api_key: str | None) -> Identity:
            return security.authorize(Scope.EVALUATE, authorization, api_key)

        return await start_http(
            context.holder,
            self.host,
            self.port,
            http=HttpLimits(
                max_body_bytes=config.http_max_body,
                body_timeout=config.http_body_timeout,
                max_streams=config.http_max_streams,
            ),
            authorize=counted(context.metrics, authorize) if security.checks_tokens else None,
            rate=config.ofrep_rate,
            burst=config.ofrep_burst,
            source=context.source.name,
            metrics=context.metrics,
            reuse_port=config.worker,
            ssl_context=security.ssl_context(),
            grace=config.grace,
        )

    async def _stop(self, running: RunningHttp, grace: float) -> None:
        await running.stop()  # the HTTP server's grace is config.grace, set at start


ListenerFactory = Callable[[ServeConfig], Listener | None]

# In start order among their kind (early ones first, then the rest); None: disabled.
LISTENERS: list[ListenerFactory] = [
    lambda c: ManagementListener(c.security.management_host or c.host, c.management_port),
    lambda c: GrpcListener(c.host, c.port),
    lambda c: None if c.sync_port is None else SyncListener(c.host, c.sync_port),
    lambda c: None if c.ofrep_port is None else HttpListener(c.host, c.ofrep_port),
]


def make_listeners(config: ServeConfig) -> list[Listener]:
    return [listener for factory in LISTENERS if (listener := factory(config)) is not None]
