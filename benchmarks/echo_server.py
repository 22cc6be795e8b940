"""A bare grpc.aio server with trivial handlers: the ceiling for flagedge on this machine.

    python -m benchmarks.echo_server --port 0 [--workers 2] [--uvloop]
    python -m benchmarks.load --echo --server-workers 2       # load.py starts it itself

It answers every method name (``/flagedge.v1.Evaluation/Evaluate``,
``/flagd.evaluation.v2.Service/ResolveBoolean``, ...) on raw bytes, with no protobuf at all:

    unary methods         return the request bytes
    *Stream methods       bidi: return each request message's bytes

So the load generator can send flagedge's own requests to it, unchanged, and what it measures
is grpc.aio's cost per call and per byte with nothing else in the way: no decoding, no
evaluation, no response building. The replies are the request bytes, which are at least as
large as flagedge's answers for Evaluate, ResolveBoolean and EvaluateBatch (the batch request
carries 100 contexts; the answer is three packed columns). EvaluateAll's answer (200 results)
is larger than its request, so for that scenario the echo is a lower bound on work, not an
equal one.

Workers share the port through SO_REUSEPORT, as ``flagedge serve --workers`` does. The
server prints ``serving gRPC on HOST:PORT`` once per worker (load.py waits for that line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _echo_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


_UNARY = grpc.unary_unary_rpc_method_handler(_echo)  # no (de)serializers: bytes in, bytes out
_BIDI = grpc.stream_stream_rpc_method_handler(_echo_stream)


class _AnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]
    def service(self, handler_call_details: Any) -> Any:
        method: str = handler_call_details.method
        return _BIDI if method.endswith("Stream") else _UNARY


async def _serve(host: str, port: int, reuse_port: bool) -> None:
    server = grpc.aio.server(
        handlers=[_AnyMethod()], options=[("grpc.so_reuseport", 1 if reuse_port else 0)]
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"serving gRPC on {host}:{bound} (echo, pid {os.getpid()})", file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1.0)


def _run_one(host: str, port: int, reuse_port: bool, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop  # not a dependency: pip install uvloop to try it

        uvloop.run(_serve(host, port, reuse_port))
    else:
        asyncio.run(_serve(host, port, reuse_port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run the event loop on uvloop")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers <= 1 or args.worker:
        _run_one(args.host, args.port, args.worker, args.uvloop)
        return 0
    # Supervisor: hold one port (bound, not listening) so every worker binds the same one.
    port, held = args.port, None
    if port == 0:
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((args.host, 0))
        port = held.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "benchmarks.echo_server",
        "--worker",
        f"--host={args.host}",
        f"--port={port}",
        *(["--uvloop"] if args.uvloop else []),
    ]
    workers = [subprocess.Popen(command) for _ in range(args.workers)]

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for worker in workers:
            worker.wait()
    finally:
        if held is not None:
            held.close()
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
