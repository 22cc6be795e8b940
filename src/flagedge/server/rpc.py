"""Assembling the gRPC server: services, health, reflection, limits, graceful stop.

    start_server(holder) -> RunningServer(port)
        flagedge.v1.Evaluation           native.py
        flagd.evaluation.v2.Service      flagd.py
        flagd.evaluation.v1.Service      flagd.py
        grpc.health.v1.Health            SERVING while up, NOT_SERVING while draining
        grpc.reflection.v1alpha          so grpcurl works without .proto files

    start_sync_server(holder) -> RunningSyncServer(port)      a server of its own (--sync-port)
        flagd.sync.v1.FlagSyncService    sync.py
        grpc.health.v1.Health, grpc.reflection.v1alpha

Handlers are registered with explicit (de)serializers rather than through the generated
``*_pb2_grpc`` helpers so that every request passes through status.deserializer (size and
garbage checks) and every call through status.py's wrappers (the one error mapping and,
with an auth file, the one token check: server/caller.py). Health and reflection stay open.

Transport: ``credentials`` (serve/security.py: TLS, mutual with a client CA, rotated
certificates) secure the TCP port, which then refuses plaintext; ``socket_path`` also
serves the same services on a Unix socket, plaintext, its access the file's mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # health.aio re-exports it untyped
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagd.sync.v1 import sync_pb2
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.auth import Scope
from flagedge.metrics import ServerMetrics
from flagedge.server import status
from flagedge.server.caller import DEFAULT_MAX_STREAMS, Authorize, Gate, Views
from flagedge.server.events import ChangeHub
from flagedge.server.flagd import (
    RESOLVE_TYPES,
    FlagdCore,
    FlagdV1Servicer,
    FlagdV2Servicer,
    unix_now,
)
from flagedge.server.native import NativeServicer
from flagedge.server.sync import SERVICE as SYNC_SERVICE
from flagedge.server.sync import FlagSyncServicer, Renderings, SyncHub
from flagedge.snapshot import SnapshotHolder
from flagedge.wire import Limits

NATIVE_SERVICE = "flagedge.v1.Evaluation"
FLAGD_V2_SERVICE = "flagd.evaluation.v2.Service"
FLAGD_V1_SERVICE = "flagd.evaluation.v1.Service"
SERVICES = (NATIVE_SERVICE, FLAGD_V2_SERVICE, FLAGD_V1_SERVICE)


class _Running:
    """What both started servers share: the bound port and a graceful stop."""

    def __init__(
        self, server: grpc.aio.Server, port: int, hub: ChangeHub | SyncHub, health_servicer: Any
    ) -> None:
        self.server = server
        self.port = port
        self.hub = hub
        self._health = health_servicer
        self._stopped = False

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop taking calls, close the hub (what that ends: each server says), let in-flight
        calls finish within ``grace`` seconds, then cancel what is left."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        self.hub.close()
        await self.server.stop(grace)
        await self._stopped_serving()

    async def _stopped_serving(self) -> None:
        """What is left to do once the server has stopped."""


class RunningServer(_Running):
    """A started server. ``port`` is the bound gRPC port (useful after asking for port 0).
    Stopping tells event streams (provider_shutdown), then stops the metrics."""

    hub: ChangeHub

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        hub: ChangeHub,
        health_servicer: Any,
        server_id: str,
        metrics: ServerMetrics | None = None,
        socket_path: str | None = None,
        guard: status.Guard | None = None,
    ) -> None:
        super().__init__(server, port, hub, health_servicer)
        self.metrics = metrics or ServerMetrics()
        self.socket_path = socket_path
        self.guard = guard or status.Guard(Limits().max_streams)  # open streams, limit lines
        self.server_id = server_id

    def serving(self) -> bool:
        return not self._stopped

    async def _stopped_serving(self) -> None:
        await self.metrics.stop()

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _preserialized(message: bytes) -> bytes:
    return message


def _serializer(resp: Any) -> Callable[[Any], bytes]:
    """A response type's serializer; ``bytes`` for handlers that serialize ahead of time
    (the sync service sends one serialized message to every stream)."""
    return _preserialized if resp is bytes else resp.SerializeToString


def _handlers(
    service: str,
    unary: dict[str, tuple[Callable[..., Any], Any, Any]],
    server_streams: dict[str, tuple[Callable[..., Any], Any, Any]],
    bidi: dict[str, tuple[Callable[..., Any], Any, Any]],
    max_bytes: int,
    metrics: ServerMetrics,
    guard: status.Guard,
    gate: Gate | None = None,
) -> grpc.GenericRpcHandler[Any, Any]:
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, (fn, req, resp) in unary.items():
        method = f"{service}/{name}"
        methods[name] = grpc.unary_unary_rpc_method_handler(
            status.unary(metrics.timed(method, fn), method, guard, gate),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=_serializer(resp),
        )
    for name, (fn, req, resp) in server_streams.items():
        method = f"{service}/{name}"
        methods[name] = grpc.unary_stream_rpc_method_handler(
            metrics.streaming(method, status.server_stream(fn, method, guard, gate)),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=_serializer(resp),
        )
    for name, (fn, req, resp) in bidi.items():
        method = f"{service}/{name}"
        methods[name] = grpc.stream_stream_rpc_method_handler(
            metrics.streaming(
                method, status.bidi_stream(metrics.timed(method, fn), method, guard, gate)
            ),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=_serializer(resp),
        )
    return grpc.method_handlers_generic_handler(service, methods)


def _flagd_handlers(
    service: str,
    servicer: FlagdV1Servicer | FlagdV2Servicer,
    module: Any,
    max_bytes: int,
    metrics: ServerMetrics,
    guard: status.Guard,
    gate: Gate | None,
) -> grpc.GenericRpcHandler[Any, Any]:
    unary = {
        f"Resolve{kind}": (
            getattr(servicer, f"Resolve{kind}"),
            getattr(module, f"Resolve{kind}Request"),
            getattr(module, f"Resolve{kind}Response"),
        )
        for kind in RESOLVE_TYPES
    }
    if isinstance(servicer, FlagdV1Servicer):
        unary["ResolveAll"] = (servicer.ResolveAll, v1.ResolveAllRequest, v1.ResolveAllResponse)
    events = {
        "EventStream": (servicer.EventStream, module.EventStreamRequest, module.EventStreamResponse)
    }
    return _handlers(service, unary, events, {}, max_bytes, metrics, guard, gate)


async def start_server(
    holder: SnapshotHolder,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: Limits | None = None,
    source: str | None = None,
    keepalive_interval: float = 20.0,
    stream_deadline: float = 0.0,
    reuse_port: bool = False,
    clock: Callable[[], int] = unix_now,
    server_id: str | None = None,
    metrics: ServerMetrics | None = None,
    credentials: grpc.ServerCredentials | None = None,
    authorize: Authorize | None = None,
    max_streams_per_token: int = DEFAULT_MAX_STREAMS,
    socket_path: str | None = None,
    socket_mode: int = 0o660,
) -> RunningServer:
    """Start serving ``holder`` and return once the port is bound.

    ``reuse_port`` lets several processes bind the same port (``serve --workers``); it is off
    otherwise so that a second server on a taken port fails instead of sharing it.
    ``source`` names the definitions source for ``Flagd-Selector: source=...``.
    ``stream_deadline`` (seconds, 0 for none) ends each flagd EventStream that long after it
    opened, with DEADLINE_EXCEEDED, as flagd's ``--stream-deadline`` does.
    ``metrics`` (flagedge/metrics.py) counts evaluations, call times and open streams; one is
    made when none is given. It is folded every second while the server runs.
    ``credentials`` (TLS) secure the port; ``authorize`` (Security.authorize: an auth file)
    makes every evaluation call present a token with scope ``evaluate``, and limits each
    token name to ``max_streams_per_token`` open streaming calls (0: no limit).
    ``socket_path`` also serves on that Unix socket, made ``socket_mode`` (0660 or 0600).
    ``limits`` (wire.Limits) bounds requests, streams and connections.
    """
    limits = limits or Limits()
    server_id = server_id or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    hub = ChangeHub(holder, loop)
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 1 if reuse_port else 0), *limits.grpc_options(), *_PENDING]
    )
    max_bytes = limits.max_message_bytes
    guard = status.Guard(limits.max_streams)

    metrics = metrics or ServerMetrics()
    metrics.bind(holder)
    gate = None
    if authorize is not None:
        gate = Gate(authorize, Scope.EVALUATE, max_streams=max_streams_per_token, metrics=metrics)
    views = Views()
    native = NativeServicer(
        holder,
        hub,
        limits,
        clock=clock,
        server_id=server_id,
        evaluations=metrics.evaluations,
        views=views,
    )
    core = FlagdCore(
        holder,
        hub,
        limits,
        source=source,
        clock=clock,
        keepalive_interval=keepalive_interval,
        stream_deadline=stream_deadline,
        evaluations=metrics.evaluations,
        views=views,
    )
    server.add_generic_rpc_handlers(
        [
            _handlers(
                NATIVE_SERVICE,
                {
                    "Evaluate": (native.Evaluate, pb.EvaluateRequest, pb.EvaluateResponse),
                    "EvaluateAll": (
                        native.EvaluateAll,
                        pb.EvaluateAllRequest,
                        pb.EvaluateAllResponse,
                    ),
                    "EvaluateBatch": (
                        native.EvaluateBatch,
                        pb.EvaluateBatchRequest,
                        pb.EvaluateBatchResponse,
                    ),
                },
                {"Watch": (native.Watch, pb.WatchRequest, pb.WatchEvent)},
                {
                    "EvaluateStream": (
                        native.EvaluateBatch,
                        pb.EvaluateBatchRequest,
                        pb.EvaluateBatchResponse,
                    )
                },
                max_bytes,
                metrics,
                guard,
                gate,
            ),
            _flagd_handlers(
                FLAGD_V2_SERVICE, FlagdV2Servicer(core), v2, max_bytes, metrics, guard, gate
            ),
            _flagd_handlers(
                FLAGD_V1_SERVICE, FlagdV1Servicer(core), v1, max_bytes, metrics, guard, gate
            ),
        ]
    )

    bound, health_servicer = await _start(
        server, SERVICES, "gRPC", host, port, credentials, hub, socket_path, socket_mode
    )
    metrics.start()
    return RunningServer(
        server, bound, hub, health_servicer, server_id, metrics, socket_path, guard
    )


async def _start(
    server: grpc.aio.Server,
    services: tuple[str, ...],
    what: str,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None,
    hub: ChangeHub | SyncHub,
    socket_path: str | None = None,
    socket_mode: int = 0o660,
) -> tuple[int, Any]:
    """Add the health and reflection services, bind ``host:port`` (and ``socket_path``),
    start ``server`` and report ``services`` SERVING: the bound port and the health servicer.
    A bind that fails closes ``hub`` and raises OSError naming the ``what`` port."""
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{_bracket(host)}:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        hub.close()
        raise OSError(f"cannot bind {what} port {host}:{port}: {exc}") from exc
    if socket_path is not None:
        try:
            _bind_socket(server, socket_path, socket_mode)
        except OSError:
            hub.close()
            raise
    await server.start()
    for name in ("", *services):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return bound, health_servicer


def _bind_socket(server: grpc.aio.Server, path: str, mode: int) -> None:
    """Serve on a Unix socket at ``path`` with file mode ``mode``. grpc replaces a stale
    socket left by a killed process; anything else at that path is refused, not removed."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"cannot serve on {path}: it exists and is not a socket")
    # The umask decides the mode the socket is created with: none but the owner may connect
    # until the chmod below opens it to the group (if asked to), never to anyone else.
    previous = os.umask(0o177)
    try:
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise OSError(f"cannot serve on the Unix socket {path}")
    except RuntimeError as exc:
        raise OSError(f"cannot serve on the Unix socket {path}: {exc}") from exc
    finally:
        os.umask(previous)
    os.chmod(path, mode)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# flagd's sync server keep-alive policy (--keep-alive-min-time 30 s, pings allowed without
# a call): grpc's default would answer a provider tuned for flagd, pinging an idle stream
# every 30 s, with GOAWAY.
_SYNC_KEEPALIVE = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 30_000),
)


# Calls that arrived but wait for the server loop to take them. Above grpc's soft limit (1,000)
# it cancels a growing share of new calls at random, and every provider reconnecting at once
# after an edge restart is such a burst (2,000 SyncFlags calls at once lost about one in ten,
# measured); a cancelled provider waits out its backoff (12 s by default) before it retries,
# and a burst of unary calls while the loop is briefly busy lost calls the same way (the soak
# benchmark). A call costs little once taken: both servers accept much larger bursts.
_PENDING = (
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 30_000),
)


class RunningSyncServer(_Running):
    """A started sync server. ``port`` is the bound port (useful after asking for port 0).
    Stopping ends every SyncFlags stream (providers reconnect elsewhere or later)."""

    hub: SyncHub

    def __init__(
        self, server: grpc.aio.Server, port: int, hub: SyncHub, health_servicer: Any
    ) -> None:
        super().__init__(server, port, hub, health_servicer)


async def start_sync_server(
    holder: SnapshotHolder,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    source: str | None = None,
    stream_deadline: float = 0.0,
    reuse_port: bool = False,
    limits: Limits | None = None,
    metrics: ServerMetrics | None = None,
    credentials: grpc.ServerCredentials | None = None,
    authorize: Authorize | None = None,
    max_streams_per_token: int = DEFAULT_MAX_STREAMS,
) -> RunningSyncServer:
    """Serve flagd's sync service over ``holder`` on a server of its own; return once bound.

    ``source`` is what each flag's ``source`` says and what ``Flagd-Selector: source=...``
    names; ``stream_deadline`` (seconds, 0 for none) ends each SyncFlags stream that long
    after it opened with DEADLINE_EXCEEDED, as flagd's ``--stream-deadline`` does.
    ``credentials`` and ``authorize`` as for start_server, with the scope ``sync``: a token
    limited to flag prefixes is sent only those flags' rules.
    """
    limits = limits or Limits()
    # The connection limits of every listener, but flagd's keepalive policy and no send limit
    # of our own (the whole configuration travels in one message).
    overridden = {
        "grpc.max_send_message_length",
        "grpc.http2.min_ping_interval_without_data_ms",
        "grpc.keepalive_permit_without_calls",
    }
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            *(o for o in limits.grpc_options() if o[0] not in overridden),
            ("grpc.max_send_message_length", -1),
            *_SYNC_KEEPALIVE,
            *_PENDING,
        ]
    )
    guard = status.Guard(limits.max_streams)
    metrics = metrics or ServerMetrics()
    gate = None
    if authorize is not None:
        gate = Gate(authorize, Scope.SYNC, max_streams=max_streams_per_token, metrics=metrics)
    hub = SyncHub(holder, asyncio.get_running_loop())
    servicer = FlagSyncServicer(
        holder, hub, Renderings(source, {}), stream_deadline=stream_deadline
    )
    server.add_generic_rpc_handlers(
        [
            _handlers(
                SYNC_SERVICE,
                {
                    "FetchAllFlags": (servicer.FetchAllFlags, sync_pb2.FetchAllFlagsRequest, bytes),
                    "GetMetadata": (
                        servicer.GetMetadata,
                        sync_pb2.GetMetadataRequest,
                        sync_pb2.GetMetadataResponse,
                    ),
                },
                {"SyncFlags": (servicer.SyncFlags, sync_pb2.SyncFlagsRequest, bytes)},
                {},
                limits.max_message_bytes,
                metrics,
                guard,
                gate,
            )
        ]
    )
    bound, health_servicer = await _start(
        server, (SYNC_SERVICE,), "sync", host, port, credentials, hub
    )
    return RunningSyncServer(server, bound, hub, health_servicer)
