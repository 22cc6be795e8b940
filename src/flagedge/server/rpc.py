"""Assembling the gRPC server: services, health, reflection, limits, graceful stop.

    start_server(holder) -> RunningServer(port)
        flagedge.v1.Evaluation           native.py
        flagd.evaluation.v2.Service      flagd.py
        flagd.evaluation.v1.Service      flagd.py
        grpc.health.v1.Health            SERVING while up, NOT_SERVING while draining
        grpc.reflection.v1alpha          so grpcurl works without .proto files

Handlers are registered with explicit (de)serializers rather than through the generated
``*_pb2_grpc`` helpers so that every request passes through status.deserializer (size and
garbage checks) and every call through status.py's wrappers (the one error mapping).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # health.aio re-exports it untyped
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.metrics import ServerMetrics
from flagedge.server import status
from flagedge.server.events import ChangeHub
from flagedge.server.flagd import FlagdCore, FlagdV1Servicer, FlagdV2Servicer, unix_now
from flagedge.server.native import NativeServicer
from flagedge.snapshot import SnapshotHolder
from flagedge.wire import Limits

NATIVE_SERVICE = "flagedge.v1.Evaluation"
FLAGD_V2_SERVICE = "flagd.evaluation.v2.Service"
FLAGD_V1_SERVICE = "flagd.evaluation.v1.Service"
SERVICES = (NATIVE_SERVICE, FLAGD_V2_SERVICE, FLAGD_V1_SERVICE)


class RunningServer:
    """A started server. ``port`` is the bound gRPC port (useful after asking for port 0)."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        hub: ChangeHub,
        health_servicer: Any,
        server_id: str,
        metrics: ServerMetrics | None = None,
        guard: status.Guard | None = None,
    ) -> None:
        self.metrics = metrics or ServerMetrics()
        self.guard = guard or status.Guard(Limits().max_streams)  # open streams, limit lines
        self.server = server
        self.port = port
        self.hub = hub
        self.server_id = server_id
        self._health = health_servicer
        self._stopped = False

    def serving(self) -> bool:
        return not self._stopped

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop taking calls, tell event streams (provider_shutdown), let in-flight calls
        finish within ``grace`` seconds, then cancel what is left."""
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        self.hub.close()
        await self.server.stop(grace)
        await self.metrics.stop()

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


def _handlers(
    service: str,
    unary: dict[str, tuple[Callable[..., Any], Any, Any]],
    server_streams: dict[str, tuple[Callable[..., Any], Any, Any]],
    bidi: dict[str, tuple[Callable[..., Any], Any, Any]],
    max_bytes: int,
    metrics: ServerMetrics,
    guard: status.Guard,
) -> grpc.GenericRpcHandler[Any, Any]:
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, (fn, req, resp) in unary.items():
        method = f"{service}/{name}"
        methods[name] = grpc.unary_unary_rpc_method_handler(
            status.unary(metrics.timed(method, fn), method, guard),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=resp.SerializeToString,
        )
    for name, (fn, req, resp) in server_streams.items():
        method = f"{service}/{name}"
        methods[name] = grpc.unary_stream_rpc_method_handler(
            metrics.streaming(method, status.server_stream(fn, method, guard)),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=resp.SerializeToString,
        )
    for name, (fn, req, resp) in bidi.items():
        method = f"{service}/{name}"
        methods[name] = grpc.stream_stream_rpc_method_handler(
            metrics.streaming(method, status.bidi_stream(metrics.timed(method, fn), method, guard)),
            request_deserializer=status.deserializer(req, max_bytes),
            response_serializer=resp.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service, methods)


def _flagd_handlers(
    service: str,
    servicer: FlagdV1Servicer | FlagdV2Servicer,
    module: Any,
    max_bytes: int,
    metrics: ServerMetrics,
    guard: status.Guard,
) -> grpc.GenericRpcHandler[Any, Any]:
    unary = {
        f"Resolve{kind}": (
            getattr(servicer, f"Resolve{kind}"),
            getattr(module, f"Resolve{kind}Request"),
            getattr(module, f"Resolve{kind}Response"),
        )
        for kind in ("Boolean", "String", "Float", "Int", "Object")
    }
    if isinstance(servicer, FlagdV1Servicer):
        unary["ResolveAll"] = (servicer.ResolveAll, v1.ResolveAllRequest, v1.ResolveAllResponse)
    events = {
        "EventStream": (servicer.EventStream, module.EventStreamRequest, module.EventStreamResponse)
    }
    return _handlers(service, unary, events, {}, max_bytes, metrics, guard)


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
) -> RunningServer:
    """Start serving ``holder`` and return once the port is bound.

    ``reuse_port`` lets several processes bind the same port (``serve --workers``); it is off
    otherwise so that a second server on a taken port fails instead of sharing it.
    ``source`` names the definitions source for ``Flagd-Selector: source=...``.
    ``stream_deadline`` (seconds, 0 for none) ends each flagd EventStream that long after it
    opened, with DEADLINE_EXCEEDED, as flagd's ``--stream-deadline`` does.
    ``metrics`` (flagedge/metrics.py) counts evaluations, call times and open streams; one is
    made when none is given. It is folded every second while the server runs.
    ``limits`` (wire.Limits) bounds requests, streams and connections.
    """
    limits = limits or Limits()
    server_id = server_id or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    hub = ChangeHub(holder, loop)
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 1 if reuse_port else 0), *limits.grpc_options()]
    )
    max_bytes = limits.max_message_bytes
    guard = status.Guard(limits.max_streams)

    metrics = metrics or ServerMetrics()
    metrics.bind(holder)
    native = NativeServicer(
        holder, hub, limits, clock=clock, server_id=server_id, evaluations=metrics.evaluations
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
            ),
            _flagd_handlers(FLAGD_V2_SERVICE, FlagdV2Servicer(core), v2, max_bytes, metrics, guard),
            _flagd_handlers(FLAGD_V1_SERVICE, FlagdV1Servicer(core), v1, max_bytes, metrics, guard),
        ]
    )

    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    try:
        bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
    except RuntimeError as exc:
        hub.close()
        raise OSError(f"cannot bind gRPC port {host}:{port}: {exc}") from exc
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    metrics.start()
    return RunningServer(server, bound, hub, health_servicer, server_id, metrics, guard)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
