"""What a server process listens on: the Listener seam.

    Listener.start(context)   bind (port 0 picks one: ``port`` then says which) and serve
    Listener.stop(grace)      stop taking calls, let in-flight ones finish within ``grace``

    GrpcListener         flagedge.v1 + flagd evaluation v1/v2, health, reflection (server/)
    ManagementListener   /healthz, /readyz, /metrics; starts first and stops last, so probes
                         answer while definitions load and while calls drain

Every listener reads the same ServeContext: one SnapshotHolder, one ServerMetrics, the
Source and a readiness check. A new front door (OFREP, flagd sync, admin) is one more class
here with a factory in ``LISTENERS``; the others do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..metrics import ServerMetrics
from ..server.management import ManagementServer, start_management
from ..server.rpc import RunningServer, start_server
from ..snapshot import SnapshotHolder
from .config import ServeConfig
from .sources import Source


@dataclass(slots=True)
class ServeContext:
    config: ServeConfig
    holder: SnapshotHolder
    metrics: ServerMetrics
    source: Source
    server_id: str
    ready: Callable[[], bool]  # every listener started and a snapshot serving
    details: Callable[[], Mapping[str, object]]  # what /readyz adds


class Listener(Protocol):
    name: str  # "gRPC", "management", ...: how logs name it
    early: bool  # started before the source loads (probes), stopped last
    port: int

    async def start(self, context: ServeContext) -> None: ...

    async def stop(self, grace: float) -> None: ...


class GrpcListener:
    name = "gRPC"
    early = False

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.running: RunningServer | None = None

    async def start(self, context: ServeContext) -> None:
        config = context.config
        self.running = await start_server(
            context.holder,
            self.host,
            self.port,
            source=context.source.name,
            reuse_port=config.worker,
            server_id=context.server_id,
            metrics=context.metrics,
            stream_deadline=config.stream_deadline,
            limits=config.limits,
        )
        self.port = self.running.port

    async def stop(self, grace: float) -> None:
        if self.running is not None:
            await self.running.stop(grace)


class ManagementListener:
    name = "management"
    early = True

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.server: ManagementServer | None = None

    async def start(self, context: ServeContext) -> None:
        self.server = await start_management(
            self.host,
            self.port,
            context.ready,
            reuse_port=context.config.worker,
            details=context.details,
            metrics=context.metrics.exposition,
        )
        self.port = self.server.port

    async def stop(self, grace: float) -> None:
        if self.server is not None:
            await self.server.close()


ListenerFactory = Callable[[ServeConfig], Listener | None]

# In start order among their kind (early ones first, then the rest); None: disabled.
LISTENERS: list[ListenerFactory] = [
    lambda c: ManagementListener(c.host, c.management_port),
    lambda c: GrpcListener(c.host, c.port),
]


def make_listeners(config: ServeConfig) -> list[Listener]:
    return [listener for factory in LISTENERS if (listener := factory(config)) is not None]
