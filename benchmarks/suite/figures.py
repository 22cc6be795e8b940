"""Every figure of a report, flattened to ``id -> {value, unit, better, gate}`` for comparison.

``better`` is "higher" (throughput, speed-ups, ratios to the echo server) or "lower" (times,
latencies, memory). ``gate`` says whether the regression check fails on it by default:

    normalised   same-run ratios: flagedge/echo per gRPC method, flagedge's speed-up over
                 each peer. Machine noise moves both sides of the ratio together.
    in-process   engine evaluations/s, compile and kill-switch times, RSS: one process, no
                 network, best or median of several passes; steady to ~10% on a quiet machine.
    absolute     gRPC calls/s and latencies, propagation latency, scaling: two processes
                 sharing two cores with whatever else runs; shown, gated only with --gate all.
"""

from __future__ import annotations

from typing import Any

GATED_CLASSES = ("normalised", "in-process")


def _fig(value: float | None, unit: str, better: str, cls: str) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": value, "unit": unit, "better": better, "class": cls}


def figures(sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any] | None] = {}
    engine = sections.get("engine")
    if engine:
        for r in engine["rows"]:
            out[f"engine.{r['kind']}.{r['flags']}.evals_per_s"] = _fig(
                r["evals_per_s"], "evals/s", "higher", "in-process"
            )
    cost = sections.get("cost")
    if cost:
        for r in cost["rows"]:
            n = r["flags"]
            out[f"cost.compile.{n}.ms"] = _fig(r["compile_ms"], "ms", "lower", "in-process")
            out[f"cost.kill_switch.{n}.us"] = _fig(r["kill_us"], "µs", "lower", "in-process")
    memory = sections.get("memory")
    if memory:
        for r in memory["rows"]:
            out[f"memory.rss.{r['flags']}.mib"] = _fig(r["rss_mib"], "MiB", "lower", "in-process")
    grpc = sections.get("grpc")
    if grpc:
        for r in grpc["rows"]:
            base = f"grpc.{r['scenario']}.{r['server']}"
            if r.get("vs_echo") is not None:
                out[f"grpc.{r['scenario']}.vs_echo"] = _fig(
                    r["vs_echo"], "x echo", "higher", "normalised"
                )
            out[base + ".rpc_per_s"] = _fig(r["rpc_per_s"], "RPC/s", "higher", "absolute")
            out[base + ".evals_per_s"] = _fig(r["evals_per_s"], "evals/s", "higher", "absolute")
            for q in ("p50_ms", "p99_ms", "p999_ms"):
                out[f"{base}.{q}"] = _fig(r[q], "ms", "lower", "absolute")
            out[base + ".server_us"] = _fig(r.get("server_us"), "µs/call", "lower", "absolute")
    propagation = sections.get("propagation")
    if propagation:
        for r in propagation["rows"]:
            for q in ("p50_ms", "p99_ms"):
                out[f"propagation.{r['run']}.{q}"] = _fig(r[q], "ms", "lower", "absolute")
    scaling = sections.get("scaling")
    if scaling:
        for r in scaling["rows"]:
            if "error" not in r:
                out[f"scaling.{r['scenario']}.workers{r['workers']}.rpc_per_s"] = _fig(
                    r["rpc_per_s"], "RPC/s", "higher", "absolute"
                )
    peers = sections.get("peers")
    if peers:
        for peer, per in peers["speedup"].items():
            for workload, value in per.items():
                out[f"peers.speedup.{peer}.{workload}"] = _fig(value, "x", "higher", "normalised")
        for workload, cell in peers["results"].get("flagedge", {}).items():
            out[f"peers.flagedge.{workload}.ns_per_eval"] = _fig(
                cell.get("ns_per_eval"), "ns", "lower", "in-process"
            )
    return {k: v for k, v in out.items() if v is not None}
