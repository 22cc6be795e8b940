"""report.json -> report.md: the summary a performance engineer reads first, then each section."""

from __future__ import annotations

from typing import Any

from benchmarks.peers import BUILTIN_PEERS
from benchmarks.peers.run import fmt_ns
from flagedge.bench.load import SCENARIOS


def _poll_words(row: dict[str, Any]) -> str:
    """How the poller polled, from a propagation row (older reports lack the fields)."""
    interval = row.get("poll_interval_ms")
    client = row.get("poll_client", "grpcio")
    pace = "back to back" if not interval else f"every {interval:g} ms"
    via = "the lean HTTP/2 client benchmarks/h2probe.py" if client == "probe" else "grpc.aio"
    return f"{pace} through {via}"


def _n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def _rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def _table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(head) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(sep) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _plot(report: dict[str, Any], name: str, alt: str) -> list[str]:
    if name in report.get("plots", []):
        return ["", f"![{alt}]({name})"]
    return []


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures, one bullet each (also what BENCHMARKS.md quotes)."""
    s = report["sections"]
    out = []
    engine = s.get("engine")
    if engine:
        sizes = sorted({r["flags"] for r in engine["rows"]})
        big = sizes[-1]
        cells = {(r["kind"], r["flags"]): r for r in engine["rows"]}
        parts = [
            f"{k} {_rate(cells[k, big]['evals_per_s'])}"
            for k in ("static", "targeted", "fractional", "sem_ver")
            if (k, big) in cells
        ]
        out.append(f"**Engine**, evaluations/s on one core, {big:,}-flag set: " + ", ".join(parts))
    cost = s.get("cost")
    if cost:
        last = cost["rows"][-1]
        out.append(
            f"**Compile** {last['flags']:,} flags in {_n(last['compile_ms'])} ms "
            f"(grows as n^{cost['compile_growth_exponent']}); **kill switch** applied in "
            f"{_n(last['kill_us'], 1)} µs (n^{cost['kill_growth_exponent']})"
        )
    memory = s.get("memory")
    if memory:
        parts = [f"{r['flags']:,} flags {r['rss_mib']:.0f} MiB" for r in memory["rows"]]
        per = f", about {memory['kib_per_flag']:.1f} KiB per flag" if memory["kib_per_flag"] else ""
        out.append("**Memory** per edge process (RSS): " + ", ".join(parts) + per)
    grpc = s.get("grpc")
    if grpc:
        fe = {r["scenario"]: r for r in grpc["rows"] if r["server"] == "flagedge"}
        parts = []
        for name in ("evaluate", "resolve", "batch"):
            if name in fe:
                r = fe[name]
                parts.append(
                    f"{SCENARIOS[name].title} {_n(r['rpc_per_s'])} RPC/s "
                    f"({r.get('vs_echo', 0):.2f}x echo, p99 {r['p99_ms']:.1f} ms)"
                )
        if "batch" in fe:
            parts.append(f"batch {_rate(fe['batch']['evals_per_s'])} evals/s")
        out.append(f"**gRPC**, {grpc['server_workers']} workers at saturation: " + "; ".join(parts))
    prop = s.get("propagation")
    if prop:
        parts = [
            f"{r['run']} p50 {r['p50_ms']:.1f} / p99 {r['p99_ms']:.1f} ms" for r in prop["rows"]
        ]
        out.append(
            f"**Propagation** Redis write -> answer on {prop['rows'][0]['edges']} edges: "
            + ", ".join(parts)
        )
    scaling = s.get("scaling")
    if scaling:
        parts = [
            f"{r['workers']} worker(s) {_n(r['rpc_per_s'])}"
            for r in scaling["rows"]
            if r.get("scenario") == "evaluate" and "error" not in r
        ]
        rec = scaling.get("recorded_16core")
        if rec:
            ev = [r for r in rec["rows"] if r["scenario"] == "evaluate"]
            if ev:
                parts.append(
                    f"recorded 16-core run ({rec['date']}): {ev[0]['workers']} -> "
                    f"{ev[-1]['workers']} workers {_n(ev[0]['rpc_per_s'])} -> "
                    f"{_n(ev[-1]['rpc_per_s'])}"
                )
        out.append("**Scaling**, Evaluate RPC/s: " + "; ".join(parts))
    peers = s.get("peers")
    missing = missing_peers(peers) if peers else {}
    if peers and missing:
        # The fastest of a partial set is not the fastest peer: give each measured peer alone.
        parts = [
            f"over {peer} " + ", ".join(f"{w} {x:.1f}x" for w, x in per.items())
            for peer, per in peers["speedup"].items()
        ]
        out.append(
            f"**Peers**, partial set (missing {', '.join(missing)}: no fastest peer named), "
            + ("flagedge's speed-up " + "; ".join(parts) if parts else "no peer measured")
        )
    elif peers and peers["speedup"]:
        best: dict[str, tuple[float, str]] = {}
        for peer, per in peers["speedup"].items():
            for workload, x in per.items():
                if workload not in best or x < best[workload][0]:
                    best[workload] = (x, peer)
        parts = [f"{w} {x:.1f}x ({p})" for w, (x, p) in best.items()]
        out.append("**Peers**, flagedge's speed-up over the fastest peer: " + ", ".join(parts))
    return [f"- {line}" for line in out]


def missing_peers(peers: dict[str, Any]) -> dict[str, str]:
    """The suite's peers (benchmarks.peers.BUILTIN_PEERS) with no figure on some workload,
    and why; for reports older than the section's own ``missing``, derived from its results."""
    if "missing" in peers:
        return dict(peers["missing"])
    results = peers["results"]
    return {
        name: "not in this report"
        for name in BUILTIN_PEERS
        if name not in results or any("ns_per_eval" not in cell for cell in results[name].values())
    }


def markdown(report: dict[str, Any]) -> str:
    m, g, s = report["machine"], report["git"], report["sections"]
    lib = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    peers = ", ".join(f"{k} {v}" for k, v in m["peers"].items() if v) or "none installed"
    dirty = " (**dirty tree**)" if g.get("dirty") else ""
    lines = [
        f"# flagedge benchmark report ({report['mode']} mode)",
        "",
        f"- **When:** {report['started']} to {report['ended']} UTC ({report['duration_s']:.0f} s)",
        f"- **Revision:** `{(g.get('revision') or 'unknown')[:12]}` "
        f"{(g.get('subject') or '')[:72]}{dirty}",
        f"- **Machine:** {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"{m['os']} (Linux {m['kernel']}), {m['python_implementation']} {m['python']}",
        f"- **Load average** (1/5/15 min) at start {report['loadavg']['start']}, "
        f"at end {report['loadavg']['end']}",
        f"- **Libraries:** {lib}; redis-server {m.get('redis_server')}",
        f"- **Peers:** {peers}",
        "",
        "## Summary",
        "",
        *summary_lines(report),
    ]
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    if "engine" in s:
        e = s["engine"]
        sizes = sorted({r["flags"] for r in e["rows"]})
        cells = {(r["kind"], r["flags"]): r for r in e["rows"]}
        kinds = ["static", "targeted", "fractional", "sem_ver", "all"]
        rows = [
            [k, *(_rate(cells[k, n]["evals_per_s"]) if (k, n) in cells else "" for n in sizes)]
            for k in kinds
        ]
        lines += [
            "",
            "## Engine: evaluations/s per rule kind and flag-set size (one core, in process)",
            "",
            *_table(["rule kind", *(f"{n:,} flags" for n in sizes)], rows),
            "",
            "One `Snapshot.evaluate` per call (a full Resolution back) on a flag of that kind in "
            "a mixed set of the given size; `fractional` moves to a new user each call; `all` is "
            "`evaluate_all` over the whole set, per flag. Best of "
            f"{report['params']['engine_passes']} passes; the harness's own call "
            f"({e['harness_ns_per_call']:.0f} ns) is included.",
        ]
    if "cost" in s:
        c = s["cost"]
        rows = [
            [
                f"{r['flags']:,}",
                _n(r["compile_ms"], 1),
                _n(r["compile_us_per_flag"], 1),
                _n(r["kill_us"], 1),
            ]
            for r in c["rows"]
        ]
        lines += [
            "",
            "## Cost against flag-set size: compile and kill switch",
            "",
            *_table(["flags", "compile ms", "compile µs/flag", "kill switch µs"], rows),
            "",
            f"Growth exponents (slope of log cost on log flags; 1.0 is linear): compile "
            f"{c['compile_growth_exponent']}, kill switch {c['kill_growth_exponent']}.",
            *_plot(report, "cost.png", "cost against flag-set size"),
        ]
    if "memory" in s:
        mem = s["memory"]
        rows = [
            [f"{r['flags']:,}", _n(r["rss_mib"], 1), _n(r["peak_rss_mib"], 1)] for r in mem["rows"]
        ]
        lines += [
            "",
            "## Memory per edge process",
            "",
            *_table(["flags", "RSS MiB", "peak RSS MiB"], rows),
            "",
            mem["note"] + ".",
        ]
        if mem["kib_per_flag"]:
            lines[-1] += f" Marginal cost: {mem['kib_per_flag']:.2f} KiB per flag."
    if "grpc" in s:
        gr = s["grpc"]
        rows = []
        for r in gr["rows"]:
            rows.append(
                [
                    SCENARIOS[r["scenario"]].title,
                    r["server"],
                    _n(r["rpc_per_s"]),
                    _n(r["evals_per_s"]),
                    _n(r["p50_ms"], 2),
                    _n(r["p99_ms"], 2),
                    _n(r["p999_ms"], 2),
                    _n(r.get("server_us")),
                    _n(r.get("client_us")),
                    f"{r['vs_echo']:.2f}" if r.get("vs_echo") is not None else "",
                    str(r["errors"]),
                ]
            )
        ld = gr["load"]
        lines += [
            "",
            "## gRPC: every evaluation method, flagedge against a bare echo server",
            "",
            *_table(
                [
                    "method",
                    "server",
                    "RPC/s",
                    "evals/s",
                    "p50 ms",
                    "p99 ms",
                    "p999 ms",
                    "server µs/call",
                    "client µs/call",
                    "vs echo",
                    "errors",
                ],
                rows,
                "ll" + "r" * 9,
            ),
            "",
            f"`serve --workers {gr['server_workers']}` and the echo server "
            f"(benchmarks/echo_server.py, the same run's ceiling) on {gr['server_loop']}; the "
            f"load generator (`flagedge bench load`): {ld['procs']} process x {ld['channels']} "
            f"channels x {ld['concurrency']} calls in flight, {ld['client_loop']}, closed loop, "
            f"{ld['duration_s']:g} s per run, median of {ld['repeat']} run(s), servers "
            "interleaved per method. Server and generator share the machine's cores, so read "
            "`vs echo` (flagedge's RPC/s over the echo server's) and the CPU µs per call before "
            "the absolute rates. EvaluateAll and v1 ResolveAll answer every flag of the set "
            "(203); batch and stream carry 100 contexts x 10 flags per call.",
            *_plot(report, "grpc_latency.png", "gRPC latency distributions"),
        ]
    if "propagation" in s:
        rows = [
            [
                r["run"],
                str(r["edges"]),
                _n(r["load_rate_achieved"]) if r["load_rate_target"] else "-",
                _n(r["p50_ms"], 2),
                _n(r["p99_ms"], 2),
                _n(r["max_ms"], 2),
                _n(r["all_edges_p99_ms"], 2),
            ]
            for r in s["propagation"]["rows"]
        ]
        lines += [
            "",
            "## Propagation: Redis control-plane write until every edge answers it",
            "",
            *_table(
                ["run", "edges", "load calls/s", "p50 ms", "p99 ms", "max ms", "all edges p99 ms"],
                rows,
            ),
            "",
            f"{s['propagation']['rows'][0]['flips']} kill-switch flips per run "
            "(benchmarks/propagation.py: one redis-server, N `serve --redis` edges, a poller "
            f"calling Evaluate on each edge {_poll_words(s['propagation']['rows'][0])}; the "
            "loaded run adds open-loop Evaluate calls from the same client).",
            *_plot(report, "propagation.png", "propagation latency distribution"),
        ]
    if "scaling" in s:
        sc = s["scaling"]
        rows = [
            [
                str(r["workers"]),
                r["scenario"],
                _n(r.get("rpc_per_s")),
                _n(r.get("evals_per_s")),
                _n(r.get("p50_ms"), 1),
                _n(r.get("p99_ms"), 1),
            ]
            for r in sc["rows"]
        ]
        lines += [
            "",
            "## Multi-process scaling (`serve --workers N`)",
            "",
            f"This machine ({sc['cores']} cores; {sc['note']}):",
            "",
            *_table(
                ["workers", "scenario", "RPC/s", "evals/s", "p50 ms", "p99 ms"],
                rows,
                "rl" + "r" * 4,
            ),
        ]
        rec = sc.get("recorded_16core")
        if rec:
            mach = rec.get("machine") or {}
            rows = [
                [
                    str(r["workers"]),
                    r["scenario"],
                    _n(r["rpc_per_s"]),
                    _n(r["evals_per_s"]),
                    _n(r["p50_ms"], 1),
                    _n(r["p99_ms"], 1),
                ]
                for r in rec["rows"]
            ]
            lines += [
                "",
                f"**Recorded input, not measured in this run:** a lent {mach.get('cpus')}-core "
                f"machine on {rec['date']} (Python {mach.get('python')}, server pinned to cores "
                f"0..N-1, load generator pinned to cores {mach.get('client_cpus', ['?'])[0]}-"
                f"{mach.get('client_cpus', ['?'])[-1]}), from `{rec['source']}`:",
                "",
                *_table(
                    ["workers", "scenario", "RPC/s", "evals/s", "p50 ms", "p99 ms"],
                    rows,
                    "rl" + "r" * 4,
                ),
            ]
            if rec.get("caveat"):
                lines += ["", f"Note: {rec['caveat']}"]
        lines += _plot(report, "scaling.png", "throughput against workers")
    if "peers" in s:
        p = s["peers"]
        workloads = ["static", "targeted", "rollout", "all200"]
        rows = [
            [
                f"**{name}**" if name == "flagedge" else name,
                *(
                    fmt_ns(per.get(w, {}).get("ns_per_eval"))
                    if "error" not in per.get(w, {})
                    else "error"
                    for w in workloads
                ),
            ]
            for name, per in p["results"].items()
        ]
        sp = [
            [name, *(f"{per[w]:.1f}x" if w in per else "n/a" for w in workloads)]
            for name, per in p["speedup"].items()
        ]
        missing = missing_peers(p)
        if missing:
            speedup_words = [
                "**Partial set, so no fastest peer.** Missing: "
                + "; ".join(f"{name} ({why})" for name, why in missing.items())
                + ". flagedge's speed-up over each measured peer only (peer time / flagedge "
                "time, same run):"
            ]
        else:
            speedup_words = [
                "flagedge's speed-up over each peer (peer time / flagedge time, same run):"
            ]
        lines += [
            "",
            "## Peers: the Python evaluators on the same workloads",
            "",
            *_table(["evaluator", "static", "rule-targeted", "25% rollout", "all 200 flags"], rows),
            "",
            *speedup_words,
            "",
            *_table(["peer", "static", "rule-targeted", "25% rollout", "all 200 flags"], sp),
            "",
            f"ns per flag evaluation, best of {report['params']['peers_passes']} passes "
            f"(benchmarks/peers); harness call {p['harness_ns_per_call']:.0f} ns included.",
        ]
        if p["skipped"]:
            lines += ["", "Peers skipped: " + "; ".join(p["skipped"])]
    gated = sorted(k for k, v in report["figures"].items() if v["class"] != "absolute")
    lines += [
        "",
        "## Reading and comparing",
        "",
        f"report.json holds every figure above ({len(report['figures'])} in `figures`, each "
        "with its unit and whether higher or lower is better), the machine, the revision and "
        "the parameters. `scripts/bench --compare BASELINE.json` compares figure by figure as "
        f"ratios; it fails on the {len(gated)} same-run normalised and in-process figures "
        "(flagedge/echo, speed-up over peers, engine, compile, kill switch, memory) and shows "
        "the absolute gRPC, propagation and scaling figures without failing on them "
        "(`--gate all` to fail on those too).",
    ]
    if report.get("plots_skipped"):
        lines += ["", f"Plots skipped: {report['plots_skipped']}"]
    return "\n".join(lines) + "\n"
