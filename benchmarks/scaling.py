"""Multi-process scaling: throughput of `flagedge serve --workers N` for several N.

    python -m benchmarks.scaling                       # N = 1, 2 on this machine
    python -m benchmarks.scaling --workers 1,2,4,8 --client-cpus 8 --json out.json

For each N it starts one `flagedge serve --workers N` on a free loopback port, waits until it
answers, drives it with `benchmarks.load` (`--target`) for each scenario, and stops it. When
the machine has enough cores (`--client-cpus` plus the largest N), the server is pinned to
cores 0..N-1 and the load generator to the last `--client-cpus` cores, so the two do not
compete and the figure shows the server's own scaling; otherwise nothing is pinned and the
report says so. Loopback only; every process is bounded and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.scratch import free_port
from flagedge.bench.load import bench_doc


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"no server on port {port}")


def _taskset(cpus: list[int] | None) -> list[str]:
    if not cpus or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(map(str, cpus))]


def run_one(
    workers: int,
    scenarios: list[str],
    duration: float,
    procs: int,
    server_cpus: list[int] | None,
    client_cpus: list[int] | None,
) -> list[dict[str, Any]]:
    port, mport = free_port(), free_port()
    # The benchmark flag set, which the load generator's default flags name. (Before
    # 2026-11-26 this served the bundled examples, so every Evaluate answered FLAG_NOT_FOUND;
    # the load generator now checks one answer before it starts.)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as flags:
        json.dump(bench_doc(), flags)
    server = subprocess.Popen(
        [
            *_taskset(server_cpus),
            sys.executable,
            "-m",
            "flagedge",
            "serve",
            *("--flags", flags.name, "--host", "127.0.0.1", "--port", str(port)),
            *("--management-port", str(mport), "--sync-port", "off", "--ofrep-port=0"),
            *("--workers", str(workers)),
            *("--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []
    try:
        _wait_listening(port, time.monotonic() + 60)
        time.sleep(1.0 + 0.2 * workers)  # every worker binds and loads its snapshot
        for scenario in scenarios:
            out = subprocess.run(
                [
                    *_taskset(client_cpus),
                    sys.executable,
                    "-m",
                    "benchmarks.load",
                    *("--target", f"127.0.0.1:{port}", "--scenario", scenario),
                    *("--duration", str(duration), "--procs", str(procs), "--json"),
                ],
                capture_output=True,
                text=True,
                timeout=duration * 4 + 120,
                check=False,
            )
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if out.returncode != 0 or not lines:
                rows.append({"workers": workers, "scenario": scenario, "error": out.stderr[-500:]})
                continue
            row = json.loads(lines[-1])
            row["workers"] = workers
            rows.append(row)
            print(
                f"workers={workers:<2} {scenario:<9} {row['rpc_per_s']:>9,.0f} RPC/s "
                f"{row['evals_per_s']:>12,.0f} evals/s  p50 {row['p50_ms']} ms "
                f"p99 {row['p99_ms']} ms",
                flush=True,
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        os.unlink(flags.name)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated N values")
    parser.add_argument("--scenario", default="evaluate,batch", help="benchmarks.load scenarios")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per scenario")
    parser.add_argument("--procs", type=int, default=0, help="load processes (0: client cpus)")
    parser.add_argument("--client-cpus", type=int, default=0, help="cores kept for the load")
    parser.add_argument("--json", type=Path, help="write every row and the machine here")
    args = parser.parse_args(argv)

    counts = [int(n) for n in args.workers.split(",")]
    scenarios = args.scenario.split(",")
    ncpu = os.cpu_count() or 1
    pinned = args.client_cpus > 0 and args.client_cpus + max(counts) <= ncpu
    client_cpus = list(range(ncpu - args.client_cpus, ncpu)) if pinned else None
    procs = args.procs or max(1, args.client_cpus if pinned else 1)
    rows: list[dict[str, Any]] = []
    for n in counts:
        server_cpus = list(range(n)) if pinned else None
        rows.extend(run_one(n, scenarios, args.duration, procs, server_cpus, client_cpus))
    report = {
        "machine": {
            "cpus": ncpu,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pinned": pinned,
            "client_cpus": client_cpus,
        },
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
