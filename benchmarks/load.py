"""The load generator with servers of its own: flagedge and a bare grpc.aio echo server.

    python -m benchmarks.load                          # starts flagedge, every scenario
    python -m benchmarks.load --compare --repeat 3     # flagedge and the echo server,
                                                       # interleaved, medians of 3
    python -m benchmarks.load --target 127.0.0.1:8013 --scenario resolve --rate 4000
    python -m benchmarks.load --scenario batch --duration 10 --server-workers 2 --json
    python -m benchmarks.load --compare-tls --scenario resolve,evaluate --repeat 3
                                                       # plaintext, TLS, TLS + token: one
                                                       # flagedge each, interleaved

The generator itself is flagedge.bench.load (``flagedge bench load --target`` on an installed
flagedge; its docstring describes the scenarios and how it loads). This wrapper adds what
only the repository has: starting ``flagedge serve`` on the benchmark flag set
(flagedge.bench.load.bench_doc: the 200 mixed flags plus an integer, a float and an object
flag), or benchmarks/echo_server.py, on a free loopback port, and charging them their CPU
time. --compare runs every scenario on both, interleaved, and adds ``vs_echo`` (flagedge's
calls/s over the echo server's, same run). --compare-tls starts three flagedge servers on one
throwaway CA (benchmarks/secured.py): plaintext, TLS, and TLS with an auth file (every call
carries a token), and adds ``vs_reference`` (calls/s over the plaintext server's, same run).
--server-loop picks the servers' event loop.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flagedge.bench.load import (
    SCENARIOS,
    LoadError,
    Secure,
    Target,
    add_arguments,
    bench_doc,
    run_cli,
)

__all__ = ["SCENARIOS", "Server", "main"]


class Server:
    """A server child on a free loopback port: ``flagedge serve`` with the benchmark flag set
    (or ``doc``), or benchmarks/echo_server.py. Waits for one ``serving gRPC on HOST:PORT`` line per
    worker."""

    def __init__(
        self,
        kind: str,
        workers: int,
        extra: Sequence[str] = (),
        loop: str = "auto",
        doc: dict[str, Any] | None = None,
        name: str | None = None,
        secure: Secure | None = None,
    ) -> None:
        self.kind = kind
        self.name = name or kind
        self.secure = secure or Secure()
        self._dir = tempfile.TemporaryDirectory()
        if loop == "auto":
            loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        self.loop = loop
        env = dict(os.environ)
        env["FLAGEDGE_EVENT_LOOP"] = loop  # flagedge serve's --event-loop (flagedge/serve/loop.py)
        if kind == "echo":
            command = [sys.executable, "-m", "benchmarks.echo_server"]
            if loop == "uvloop":
                command.append("--uvloop")
        else:
            path = os.path.join(self._dir.name, "flags.json")
            with open(path, "w") as f:
                json.dump(bench_doc() if doc is None else doc, f)
            command = [
                sys.executable,
                "-m",
                "flagedge",
                "serve",
                f"--flags={path}",
                "--management-port=0",
                "--sync-port=off",
                "--ofrep-port=0",
                "--log-level=INFO",
            ]
        command += ["--host=127.0.0.1", "--port=0", f"--workers={workers}", *extra]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stderr is not None
        # Read its log in a thread for ever (so the server never blocks on a full pipe), and
        # wait here for one ``serving gRPC on HOST:PORT`` line per worker, or 30 s.
        lines: queue.Queue[str] = queue.Queue()
        stream = self.process.stderr
        threading.Thread(target=lambda: [lines.put(x) for x in stream], daemon=True).start()
        self.port = 0
        ready = 0
        log: list[str] = []
        deadline = time.monotonic() + 30
        while ready < workers and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            log = [*log[-19:], line]
            # Two workers' lines can arrive interleaved in one line: count every match.
            found = re.findall(r"serving gRPC on [^ ]+:(\d+)", line)
            if found:
                self.port = int(found[0])
                ready += len(found)
        if not self.port or self.process.poll() is not None:
            self.process.kill()
            raise RuntimeError(f"the {kind} server did not start:\n{''.join(log)}")
        if ready < workers:
            print(f"note: {ready} of {workers} {kind} workers said they serve", file=sys.stderr)
        self.pids = (self.process.pid, *children(self.process.pid))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def as_target(self) -> Target:
        return Target(
            self.name, self.target, self.pids, echo=self.kind == "echo", secure=self.secure
        )

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._dir.cleanup()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_arguments(parser, target_required=False)
    servers = parser.add_argument_group("servers this tool starts (without --target)")
    servers.add_argument("--server", choices=("flagedge", "echo"), default="flagedge")
    servers.add_argument(
        "--compare",
        action="store_true",
        help="start flagedge and the echo server and run each scenario on both, interleaved",
    )
    servers.add_argument(
        "--compare-tls",
        action="store_true",
        help="start flagedge in plaintext, with TLS, and with TLS and tokens, and run each "
        "scenario on all three, interleaved (vs_reference: over plaintext)",
    )
    servers.add_argument("--server-workers", type=int, default=1)
    servers.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an extra argument for the server(s) this tool starts (repeatable)",
    )
    servers.add_argument(
        "--server-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop of the servers this tool starts (auto: uvloop when installed, as "
        "flagedge serve does)",
    )
    args = parser.parse_args(argv)
    if args.rate and args.scenario == ("stream",):
        parser.error("--rate applies to unary scenarios, not stream")

    started: list[Server] = []
    reference = None
    scratch = tempfile.TemporaryDirectory()
    try:
        if args.target:
            targets = [Target("target", args.target, tuple(args.server_pid))]
        elif args.compare_tls:
            from benchmarks import secured

            material = secured.make(Path(scratch.name))
            for name, extra, secure in (
                ("plain", [], Secure()),
                ("tls", material.serve_args(tokens=False), material.secure(tokens=False)),
                ("tls+token", material.serve_args(), material.secure()),
            ):
                started.append(
                    Server(
                        "flagedge",
                        args.server_workers,
                        [*args.server_arg, *extra],
                        args.server_loop,
                        name=name,
                        secure=secure,
                    )
                )
            targets = [s.as_target() for s in started]
            reference = "plain"
        else:
            kinds = ("echo", "flagedge") if args.compare else (args.server,)
            for kind in kinds:
                started.append(Server(kind, args.server_workers, args.server_arg, args.server_loop))
            targets = [s.as_target() for s in started]
        return run_cli(args, targets, reference)
    except LoadError as exc:
        print(f"benchmarks.load: {exc}", file=sys.stderr)
        return 2
    finally:
        for server in started:
            server.stop()
        scratch.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
