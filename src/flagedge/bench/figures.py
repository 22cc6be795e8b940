"""The figures of a row: latency percentiles and distribution, CPU time charged to server
processes, each figure's median over repeated runs, and a row as a line of text."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import Any

#: Clock ticks per second, the unit of ``cpu_ticks``.
TICKS_PER_S = os.sysconf("SC_CLK_TCK")

#: Quantiles at which every row reports its latency distribution (``cdf``).
QUANTILES: tuple[float, ...] = (
    *(i / 20 for i in range(20)),
    0.96,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
    1.0,
)


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The ``q`` quantile of sorted microseconds, in milliseconds (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index] / 1000.0


def cpu_ticks(pids: Sequence[int]) -> int | None:
    """utime + stime of ``pids`` (every thread), in clock ticks; None when one is unreadable."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])
    return total


_NUMBERS = ("rpc_per_s", "evals_per_s", "p50_ms", "p99_ms", "p999_ms", "client_us", "server_us")


def median_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated runs (figure by figure, not one whole run)."""
    out = dict(rows[-1])
    for name in _NUMBERS:
        values = [r[name] for r in rows if r.get(name) is not None]
        out[name] = statistics.median(values) if values else None
    cdfs = [r["cdf"] for r in rows if r.get("cdf")]
    out["cdf"] = [statistics.median(col) for col in zip(*cdfs, strict=True)] if cdfs else []
    out["runs"] = len(rows)
    out["errors"] = sum(r["errors"] for r in rows)
    out.pop("run", None)
    out.pop("first_error", None)
    out["first_errors"] = sorted({r["first_error"] for r in rows if r.get("first_error")})
    return out


def line(row: dict[str, Any]) -> str:
    """One row as a line of text."""
    cpu = ""
    if row.get("client_us") is not None:
        cpu += f"  client {row['client_us']:.0f} us/call"
    if row.get("server_us") is not None:
        cpu += f"  server {row['server_us']:.0f} us/call"
    ratio = f"  = {row['vs_echo']:.2f} x echo" if row.get("vs_echo") is not None else ""
    if row.get("vs_reference") is not None:
        ratio += f"  = {row['vs_reference']:.2f} x {row['reference']}"
    return (
        f"{row.get('server', ''):8} {row['scenario']:14} {row['rpc_per_s']:>9,.0f} rpc/s"
        f" {row['evals_per_s']:>11,.0f} evals/s  p50 {row['p50_ms']:.2f} ms"
        f"  p99 {row['p99_ms']:.2f} ms  p999 {row['p999_ms']:.2f} ms"
        f"  errors {row['errors']}{cpu}{ratio}"
    )
