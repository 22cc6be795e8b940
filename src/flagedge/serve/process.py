"""One server process: a Source feeding one SnapshotHolder, and the listeners over it.

start early listeners (management: /healthz answers while definitions load)
source.start(holder)            the first snapshot, or exit 2 (SourceFailed)
start the other listeners       gRPC, ...
ready ──── SIGTERM/SIGINT ───► not ready; stop listeners (in-flight calls drain within
                               --grace); source.stop(); early listeners close last
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import uuid
from collections.abc import Mapping
from pathlib import Path

from ..errors import DefinitionError
from ..logs import event
from ..metrics import ServerMetrics
from ..model import ValueKind
from ..snapshot import SnapshotHolder
from .config import ServeConfig
from .listeners import Listener, ServeContext, make_listeners
from .security import Security
from .sources import Source, SourceFailed, make_source

log = logging.getLogger("flagedge.serve")


def default_server_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class _Readiness:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.serving = False

    def __call__(self) -> bool:
        return self.serving and self.source.ready()

    def details(self) -> Mapping[str, object]:
        return self.source.details()


_RESOLVE = {
    ValueKind.BOOLEAN: "ResolveBoolean",
    ValueKind.STRING: "ResolveString",
    ValueKind.NUMBER: "ResolveFloat",
    ValueKind.OBJECT: "ResolveObject",
}


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _log_startup(
    config: ServeConfig, source: Source, holder: SnapshotHolder, listeners: list[Listener]
) -> None:
    snap = holder.current
    version = 0 if snap is None else snap.version
    flags = 0 if snap is None else len(snap.keys)
    # gRPC first, then management, then the rest: the line tools and tests read.
    order = sorted(listeners, key=lambda lst: {"gRPC": 0, "management": 1}.get(lst.name, 2))
    where = ", ".join(f"{lst.name} on {_display(lst.host)}:{lst.port}" for lst in order)
    socket_path = next((p for lst in listeners if (p := getattr(lst, "socket_path", None))), None)
    if socket_path:
        where += f", gRPC on the Unix socket {socket_path} (mode {config.security.socket_mode})"
    secured = config.security
    protection = ", ".join(
        part
        for part in (
            ("mutual TLS" if secured.client_ca_path else "TLS") if secured.tls else "",
            "tokens" if secured.auth_file else "",
        )
        if part
    )
    if protection:
        where += f" ({protection})"
    fields = getattr(source, "startup_fields", None)
    extra: dict[str, object] = {} if fields is None else fields()
    if snap is None:
        state = "nothing yet: not ready"
    else:
        state = f"version {version}, {flags} flag(s){' (STALE)' if extra.get('stale') else ''}"
    ports = {
        ("port" if lst.name == "gRPC" else f"{lst.name.lower()}_port"): lst.port
        for lst in listeners
    }
    event(
        log,
        logging.INFO,
        "startup",
        "serving %s, flags from %s: %s",
        where,
        source.name,
        state,
        **ports,
        source=source.name,
        version=version,
        flags=flags,
        worker=config.worker_index,
        tls=secured.tls,
        mutual_tls=secured.client_ca_path is not None,
        tokens=secured.auth_file is not None,
        **({"socket": socket_path} if socket_path else {}),
        **extra,
    )
    grpc_port = ports.get("port")
    if snap is not None and snap.keys and grpc_port is not None and config.worker_index == "0":
        host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else _display(config.host)
        # A boolean flag if there is one; otherwise the first, with its kind's method.
        flag = next(
            (f for f in snap.flags.values() if f.kind is ValueKind.BOOLEAN),
            snap.flags[snap.keys[0]],
        )
        method = _RESOLVE[flag.kind]
        # With TLS: grpcurl -cacert (the CA that signed the server's certificate); with
        # tokens: the header. The token itself is never known here, only its holder has it.
        transport = "-cacert CA.pem " if secured.tls else "-plaintext "
        if secured.client_ca_path:
            transport += "-cert CLIENT.pem -key CLIENT.key "
        header = "-H 'authorization: Bearer TOKEN' " if secured.auth_file else ""
        event(
            log,
            logging.INFO,
            "try",
            'try it: grpcurl %s%s-d \'{"flagKey": "%s", "context": '
            '{"targetingKey": "user-1"}}\' %s:%d flagd.evaluation.v2.Service/%s '
            "(README: more clients)",
            transport,
            header,
            flag.key,
            host,
            grpc_port,
            method,
            flag=flag.key,
        )


async def serve(config: ServeConfig) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (2: nothing to serve)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    metrics = ServerMetrics(
        worker=config.worker_index,
        share_dir=Path(config.metrics_dir) if config.metrics_dir else None,
    )
    holder = SnapshotHolder()
    metrics.bind(holder)
    server_id = default_server_id()
    try:
        security = Security(config.security)
    except (DefinitionError, OSError, ssl.SSLError) as exc:
        event(log, logging.ERROR, "reject", "cannot start: %s", exc, problems=[str(exc)])
        return 2
    source = make_source(config, metrics, server_id)
    readiness = _Readiness(source)
    context = ServeContext(
        config, holder, metrics, source, security, server_id, readiness, readiness.details
    )
    watcher = loop.create_task(security.run(), name="flagedge-security")
    listeners = make_listeners(config)
    early = [lst for lst in listeners if lst.early]
    rest = [lst for lst in listeners if not lst.early]
    started: list[Listener] = []
    try:
        try:
            for listener in early:
                await listener.start(context)
                started.append(listener)
        except OSError as exc:  # a port taken or not ours to bind: a configuration problem
            event(log, logging.ERROR, "reject", "cannot start: %s", exc, problems=[str(exc)])
            return 2
        try:
            await source.start(holder)
        except SourceFailed:
            return 2
        try:
            try:
                for listener in rest:
                    await listener.start(context)
                    started.append(listener)
            except OSError as exc:
                event(log, logging.ERROR, "reject", "cannot start: %s", exc, problems=[str(exc)])
                for listener in reversed([lst for lst in started if not lst.early]):
                    await listener.stop(0)
                return 2
            readiness.serving = True
            _log_startup(config, source, holder, listeners)
            # Everything made so far (modules, the first snapshot, the servers) lives as long
            # as the process: move it out of the cyclic GC's sight. A full collection over
            # it took 75-85 ms on the 2-core benchmark machine, a pause every caller in
            # flight would wait out (BENCHMARKS.md, "OFREP over HTTP").
            gc.freeze()
            await stopping.wait()
            event(
                log,
                logging.INFO,
                "shutdown",
                "draining (up to %.1f s)",
                config.grace,
                grace_seconds=config.grace,
            )
            readiness.serving = False
            for listener in reversed([lst for lst in started if not lst.early]):
                await listener.stop(config.grace)
        finally:
            await source.stop()
        event(log, logging.INFO, "stopped", "stopped")
        return 0
    finally:
        for listener in reversed([lst for lst in started if lst.early]):
            await listener.stop(0)
        watcher.cancel()
        await metrics.stop()
        metrics.close()
