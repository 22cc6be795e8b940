"""OFREP over HTTP: calls/s against a bare aiohttp handler, latency at half that rate, bulk
answered 304 against full bulk evaluations, and a kill switch reaching SSE streams.

    python -m benchmarks.ofrep                          # everything (about 3 minutes)
    python -m benchmarks.ofrep --rounds 5 --duration 10 --json ofrep.json
    python -m benchmarks.ofrep --only sse --streams 100 --flips 100
    python -m benchmarks.ofrep --quick                  # a few seconds: is everything wired?
    python -m benchmarks.ofrep --only instructions      # CPU instructions per call (valgrind)

What drives the load: wrk (Debian's package ``wrk``, C, epoll; installed with apt-get when it
is missing and this runs as root), one thread, keep-alive connections, pinned to the last CPU
while the server under test is pinned to the first (``taskset``), so that on two cores the
load tool never takes the server's core. Every server is one process on uvloop: ``flagedge
serve --workers 1`` and benchmarks/http_baseline.py (``app``: a web.Application route
returning constant bytes, the baseline; ``lowlevel``: the same handler on aiohttp's
low-level server, the floor). Throughput runs are interleaved (baseline, flagedge,
floor, then the next round in the opposite order) and each figure is the median over
rounds, so that a noisy neighbour hits all of them alike; the ratio is computed per round.

Latency at half rate: wrk with a per-connection delay (its ``delay()`` hook, 10 ms) and as
many connections as give half of flagedge's median throughput; wrk's own percentiles,
measured from each request's send (at half load a queue rarely forms, so coordinated
omission matters little; the achieved rate is printed). The baseline handler then gets the
same fixed-rate run: on a shared machine its tail is the machine's (a server descheduled by
a neighbour for a time slice), which flagedge's tail cannot beat.

Flags: benchmarks' mixed set of 200 flags (static, targeted, rollout, semver: a fifth of
them run rules per call). The single-flag call evaluates ``mixed-targeted-000`` (a rule)
for a user context; the bulk call evaluates all 200 for it.

Instructions (``--only instructions``, not part of the default run): each server process
under valgrind's callgrind, 300 warm-up calls, then the instructions executed over 1,000
single-flag calls on one keep-alive connection, divided by 1,000. A count, not a time: it is
the same on a busy machine as on an idle one, so it shows the cost ratio the noisy rates of a
shared machine blur (instructions are not cycles; the ratio is close, not exact).

Kill switch to SSE: one redis-server, one ``flagedge serve --redis`` edge with OFREP, N
event streams held open by this process (asyncio, raw sockets). A flip is the control
plane's own write (RedisAdmin.write, the Lua script the CLI runs: a kill, then its removal);
the clock starts just before the write and stops when a stream reads the
``refetchEvaluation`` event; every stream, every flip is a sample.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.scratch import free_port, push, redis_command, wait_for_redis, with_switch

FLAG = "mixed-targeted-000"
SWITCH = "switch"
OFREP_LINE = re.compile(r"OFREP on [^ ]+:(\d+)")
BASELINE_LINE = re.compile(r"serving HTTP on [^ ]+:(\d+)")
DELAY_MS = 10  # wrk's per-connection pause in the fixed-rate run


def _document() -> dict[str, Any]:
    from flagedge.bench.workloads import mixed_doc

    return with_switch(mixed_doc(200), SWITCH)


def _context() -> dict[str, Any]:
    from flagedge.bench.workloads import mixed_context

    return mixed_context()


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is needed to drive the load: apt-get install wrk")


def _cpus() -> tuple[list[str], list[str]]:
    """taskset prefixes: the server on the first CPU, the load tool on the last."""
    if not shutil.which("taskset"):
        return [], []
    count = len(os.sched_getaffinity(0))
    if count < 2:
        return [], []
    cpus = sorted(os.sched_getaffinity(0))
    return ["taskset", "-c", str(cpus[0])], ["taskset", "-c", str(cpus[-1])]


def _drain(process: subprocess.Popen[str]) -> threading.Thread:
    """Keep reading a server's log so that it never blocks on a full pipe."""

    def drain() -> None:
        assert process.stderr is not None
        for _ in process.stderr:
            pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def _wait_line(process: subprocess.Popen[str], pattern: re.Pattern[str]) -> int:
    assert process.stderr is not None
    for line in process.stderr:
        found = pattern.search(line)
        if found:
            return int(found.group(1))
    raise RuntimeError(f"the server exited before it said {pattern.pattern!r}")


@dataclass(frozen=True)
class Server:
    port: int
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _process(command: list[str], pattern: re.Pattern[str]) -> Iterator[Server]:
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    drain: threading.Thread | None = None
    try:
        port = _wait_line(process, pattern)
        drain = _drain(process)
        yield Server(port, process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(10)  # it ends at the pipe's end, with the process
        if process.stderr is not None:
            process.stderr.close()


def flagedge_server(flags: Path, pin: list[str], *extra: str, redis: str | None = None) -> Any:
    command = [
        *pin,
        *(sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1"),
        *("--port=0", "--management-port=0", "--sync-port=off", f"--ofrep-port={free_port()}"),
        *("--workers=1", "--log-format=text", "--log-level=info"),
        *extra,
    ]
    if redis is None:
        command.append(f"--flags={flags}")
    else:
        command += [f"--redis={redis}", "--env=bench", f"--lkg-file={flags.parent / 'lkg.json'}"]
    return _process(command, OFREP_LINE)


def baseline_server(kind: str, pin: list[str]) -> Any:
    port = free_port()
    command = [*pin, sys.executable, "-m", "benchmarks.http_baseline", str(port), kind]
    return _process(command, BASELINE_LINE)


# -- wrk -------------------------------------------------------------------------------------


def _lua(body: bytes, headers: dict[str, str], delay_ms: int | None) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    if delay_ms is not None:
        lines.append(f"function delay() return {delay_ms} end")
    return "\n".join(lines) + "\n"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def wrk(
    url: str,
    body: bytes,
    *,
    duration: float,
    connections: int,
    pin: list[str],
    headers: dict[str, str] | None = None,
    delay_ms: int | None = None,
    server: Server | None = None,
) -> dict[str, Any]:
    """One wrk run: requests/s, latency percentiles (ms), answers that were not 2xx/3xx, and
    with ``server`` its CPU per request (µs; steadier than rates on a shared machine)."""
    cpu_before = server.cpu_seconds() if server is not None else 0.0
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(body, headers or {}, delay_ms))
    try:
        out = subprocess.run(
            [
                *pin,
                ensure_wrk(),
                *("-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"),
                *("-s", script.name, url),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    cpu = server.cpu_seconds() - cpu_before if server is not None else 0.0
    result = parse_wrk(out)
    result["cpu_us"] = round(cpu * 1e6 / max(1, result["requests"]), 1) if server else None
    return result


def parse_wrk(out: str) -> dict[str, Any]:
    """requests, requests/s, latency percentiles (ms) and bad answers from wrk --latency."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    latency = {
        f"p{q}": _ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.MULTILINE)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": round(rps, 1),
        "requests": count,
        **{k: round(v, 3) for k, v in latency.items()},
        "bad_answers": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def _post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


# -- the measurements ------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return round(statistics.median(values), 3)


def throughput(flags: Path, rounds: int, duration: float, connections: int) -> dict[str, Any]:
    """Single-flag OFREP calls/s against the two constant handlers, interleaved by round;
    then flagedge's latency at half its median rate."""
    server_pin, load_pin = _cpus()
    body = json.dumps({"context": _context()}).encode()
    path = f"/ofrep/v1/evaluate/flags/{FLAG}"
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "flagedge": [], "floor": []}
    with (
        flagedge_server(flags, server_pin) as ofrep,
        baseline_server("app", server_pin) as app,
        baseline_server("lowlevel", server_pin) as floor,
    ):
        status, _, answer = _post(ofrep.port, path, body)
        assert status == 200 and json.loads(answer)["key"] == FLAG, answer
        servers = {"baseline": app, "flagedge": ofrep, "floor": floor}
        order = ["baseline", "flagedge", "floor"]

        def run(name: str, seconds: float) -> dict[str, Any]:
            server = servers[name]
            url = f"http://127.0.0.1:{server.port}{path}"
            return wrk(
                url, body, duration=seconds, connections=connections, pin=load_pin, server=server
            )

        for name in order:  # warm every server (uvloop, allocator, caches)
            run(name, 1)
        for r in range(rounds):
            for name in order if r % 2 == 0 else list(reversed(order)):
                runs[name].append(run(name, duration))
        half = statistics.median(r["rps"] for r in runs["flagedge"]) / 2
        rate_connections = max(1, round(half * DELAY_MS / 1000))
        # The same fixed rate against the baseline handler, right after: on a shared
        # machine its tail shows what the machine adds (a descheduled server), not flagedge.
        at_half, baseline_at_half = (
            wrk(
                f"http://127.0.0.1:{servers[name].port}{path}",
                body,
                duration=max(duration, 5),
                connections=rate_connections,
                pin=load_pin,
                delay_ms=DELAY_MS,
            )
            for name in ("flagedge", "baseline")
        )

    def ratios(a: str, b: str, key: str) -> list[float]:
        return [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)]

    return {
        "connections": connections,
        "duration_s": duration,
        "rounds": rounds,
        **{f"{name}_rps": [r["rps"] for r in runs[name]] for name in order},
        **{f"{name}_cpu_us_per_call": [r["cpu_us"] for r in runs[name]] for name in order},
        "ratio_vs_baseline_per_round": [round(x, 3) for x in ratios("flagedge", "baseline", "rps")],
        "ratio_vs_baseline_median": _median(ratios("flagedge", "baseline", "rps")),
        "ratio_vs_floor_median": _median(ratios("flagedge", "floor", "rps")),
        # baseline CPU per call / flagedge CPU per call: the rate ratio an idle machine gives
        "cpu_ratio_vs_baseline_median": _median(ratios("baseline", "flagedge", "cpu_us")),
        "cpu_ratio_vs_floor_median": _median(ratios("floor", "flagedge", "cpu_us")),
        "flagedge_p99_ms_at_full_load": _median([r["p99"] for r in runs["flagedge"]]),
        "half_rate_target": round(half),
        "half_rate_achieved": at_half["rps"],
        "half_rate_connections": rate_connections,
        "half_rate_latency_ms": {k: v for k, v in at_half.items() if k.startswith("p")},
        "half_rate_baseline_achieved": baseline_at_half["rps"],
        "half_rate_baseline_latency_ms": {
            k: v for k, v in baseline_at_half.items() if k.startswith("p")
        },
        "bad_answers": sum(r["bad_answers"] for rs in runs.values() for r in rs),
    }


def bulk(flags: Path, rounds: int, duration: float, connections: int) -> dict[str, Any]:
    """Bulk evaluations of all flags against the same call answered 304 by its ETag."""
    server_pin, load_pin = _cpus()
    body = json.dumps({"context": _context()}).encode()
    path = "/ofrep/v1/evaluate/flags"
    results: dict[str, list[dict[str, Any]]] = {"full": [], "304": []}
    with flagedge_server(flags, server_pin) as server:
        status, headers, answer = _post(server.port, path, body)
        assert status == 200 and len(json.loads(answer)["flags"]) == 201
        etag = headers["ETag"]
        try:
            _post(server.port, path, body, {"If-None-Match": etag})
            raise AssertionError("expected 304")
        except Exception as exc:  # urllib raises for 304
            assert getattr(exc, "code", None) == 304, exc
        url = f"http://127.0.0.1:{server.port}{path}"
        wrk(url, body, duration=1, connections=connections, pin=load_pin)
        pair = [("full", {}), ("304", {"If-None-Match": etag})]
        for r in range(rounds):
            for name, extra in pair if r % 2 == 0 else list(reversed(pair)):
                results[name].append(
                    wrk(
                        url,
                        body,
                        duration=duration,
                        connections=connections,
                        pin=load_pin,
                        headers=extra,
                        server=server,
                    )
                )
    full, cached = results["full"], results["304"]
    return {
        "flags": 201,
        "full_rps": [r["rps"] for r in full],
        "not_modified_rps": [r["rps"] for r in cached],
        "full_cpu_us_per_call": [r["cpu_us"] for r in full],
        "not_modified_cpu_us_per_call": [r["cpu_us"] for r in cached],
        "ratio_per_round": [
            round(c["rps"] / f["rps"], 2) for c, f in zip(cached, full, strict=True)
        ],
        "ratio_median": _median([c["rps"] / f["rps"] for c, f in zip(cached, full, strict=True)]),
        "cpu_ratio_median": _median(
            [f["cpu_us"] / c["cpu_us"] for c, f in zip(cached, full, strict=True)]
        ),
    }


async def _open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ofrep/v1/events HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    await reader.readuntil(b"\n\n")  # the opening comment: subscribed
    return reader, writer


async def _next_refetch(reader: asyncio.StreamReader) -> int:
    """The monotonic time (ns) a stream reads its next refetchEvaluation event."""
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("an event stream ended")
        if line.startswith(b"data:") and b"refetchEvaluation" in line:
            return time.monotonic_ns()


def sse(streams: int, flips: int) -> dict[str, Any]:
    from flagedge.model import Override, OverrideKind
    from flagedge.store.redis import RedisAdmin, parse_target

    tmp = Path(tempfile.mkdtemp(prefix="flagedge-ofrep-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(redis_command(redis_port, tmp), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{redis_port}"
    try:
        admin = RedisAdmin(parse_target(url), "bench")
        wait_for_redis(admin)
        push(admin, _document())
        with flagedge_server(tmp / "unused.json", [], redis=url) as edge:
            samples = asyncio.run(_flip(admin, edge.port, streams, flips, Override, OverrideKind))
        admin.close()
    finally:
        redis.send_signal(signal.SIGTERM)
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    every = sorted(samples)
    return {
        "streams": streams,
        "flips": flips,
        "samples": len(every),
        "p50_ms": round(statistics.median(every), 3),
        "p99_ms": round(every[min(len(every) - 1, int(0.99 * len(every)))], 3),
        "max_ms": round(every[-1], 3),
    }


async def _flip(
    admin: Any, port: int, streams: int, flips: int, override: Any, kinds: Any
) -> list[float]:
    from flagedge.store.plane import ChangeKind, Write

    opened = [await _open_stream(port) for _ in range(streams)]
    # This process stamps the arrivals: keep its own cyclic GC from pausing the stamping
    # (the edge does the same at startup: serve/process.py).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    killed = override(kinds.KILL, "off")
    try:
        for i in range(flips):
            raw = await loop.run_in_executor(None, admin.read)
            ov = killed if i % 2 == 0 else None
            write = Write(
                raw.version, ChangeKind.OVERRIDE, "bench", "flip", flag=SWITCH, override=ov
            )
            waiting = [asyncio.ensure_future(_next_refetch(r)) for r, _ in opened]
            await asyncio.sleep(0.002)  # every stream is reading before the write
            t0 = time.monotonic_ns()
            result = await loop.run_in_executor(None, admin.write, write)
            assert result.ok
            async with asyncio.timeout(10):
                arrivals = await asyncio.gather(*waiting)
            samples.extend((t - t0) / 1e6 for t in arrivals)
            await asyncio.sleep(0.02)
    finally:
        for _, writer in opened:
            writer.close()
    return samples


def _calls(port: int, path: str, body: bytes, n: int) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(n):
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
    connection.close()


def instructions(flags: Path, calls: int = 1000) -> dict[str, Any]:
    """CPU instructions per single-flag call, counted by valgrind's callgrind in each server
    process over ``calls`` calls on one keep-alive connection after 300 warm-up calls: the
    same counts on a busy machine as on an idle one, where rates are not."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("valgrind is needed to count instructions: apt-get install valgrind")
    body = json.dumps({"context": _context()}).encode()
    path = f"/ofrep/v1/evaluate/flags/{FLAG}"
    out: dict[str, Any] = {"calls": calls}
    with tempfile.TemporaryDirectory(prefix="flagedge-callgrind-") as tmp:
        for name, command, pattern in (
            ("baseline", [sys.executable, "-m", "benchmarks.http_baseline", "{port}", "app"],
             BASELINE_LINE),
            ("floor", [sys.executable, "-m", "benchmarks.http_baseline", "{port}", "lowlevel"],
             BASELINE_LINE),
            ("flagedge", [*(sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1"),
                          *("--port=0", "--management-port=0", "--ofrep-port={port}"),
                          "--sync-port=off",
                          *("--workers=1", "--log-format=text", f"--flags={flags}")],
             OFREP_LINE),
        ):  # fmt: skip
            port = free_port()
            dump = Path(tmp) / f"{name}.out"
            argv = [part.replace("{port}", str(port)) for part in command]
            grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}"]
            with _process([*grind, *argv], pattern) as server:
                _calls(port, path, body, 300)
                subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                               capture_output=True)  # fmt: skip
                _calls(port, path, body, calls)
                subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                               capture_output=True)  # fmt: skip
                dumps = sorted(Path(tmp).glob(f"{name}.out.*"))
                text = dumps[-1].read_text(errors="replace")
                total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
                assert total, f"no totals in {dumps[-1]}"
                out[f"{name}_instructions_per_call"] = int(total.group(1)) // calls
    out["ratio_vs_baseline"] = round(
        out["baseline_instructions_per_call"] / out["flagedge_instructions_per_call"], 3
    )
    out["ratio_vs_floor"] = round(
        out["floor_instructions_per_call"] / out["flagedge_instructions_per_call"], 3
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ofrep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--flips", type=int, default=100)
    parser.add_argument(
        "--only",
        choices=("single", "bulk", "sse", "instructions"),
        action="append",
        help="one part (repeatable); instructions (valgrind) runs only when named",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s, 10 streams, 4 flips")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.streams, args.flips = 1, 1.0, 10, 4
    wanted = set(args.only or ("single", "bulk", "sse"))
    results: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="flagedge-ofrep-") as tmp:
        flags = Path(tmp) / "flags.json"
        flags.write_text(json.dumps(_document()))
        if "single" in wanted:
            results["single"] = throughput(flags, args.rounds, args.duration, args.connections)
            print(json.dumps({"single": results["single"]}), flush=True)
        if "bulk" in wanted:
            results["bulk"] = bulk(flags, args.rounds, args.duration, args.connections)
            print(json.dumps({"bulk": results["bulk"]}), flush=True)
        if "instructions" in wanted:
            results["instructions"] = instructions(flags)
            print(json.dumps({"instructions": results["instructions"]}), flush=True)
    if "sse" in wanted:
        results["sse"] = sse(args.streams, args.flips)
        print(json.dumps({"sse": results["sse"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
