"""PNG plots next to the report (matplotlib, an optional dependency of the ``bench`` extra).

grpc_latency.png   latency CDF per gRPC method, flagedge solid, echo server dashed
propagation.png    propagation latency CDF, idle and under load
scaling.png        RPC/s against workers: this machine, and the recorded 16-core run
cost.png           compile time, kill-switch time and RSS against flag-set size (log-log)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flagedge.bench.load import QUANTILES, SCENARIOS


def available() -> str | None:
    """None when matplotlib can draw here, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    return None


def draw(report: dict[str, Any], out: Path) -> list[str]:
    """Draw what the report has; return the file names written."""
    import matplotlib.pyplot as plt

    s = report["sections"]
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    grpc = s.get("grpc")
    if grpc and any(r.get("cdf") for r in grpc["rows"]):
        scenarios = list(dict.fromkeys(r["scenario"] for r in grpc["rows"]))
        fig, ax = plt.subplots(figsize=(9, 5.5))
        colours = plt.get_cmap("tab20").colors
        for i, name in enumerate(scenarios):
            for r in grpc["rows"]:
                if r["scenario"] == name and r.get("cdf"):
                    echo = r["server"] == "echo"
                    ax.plot(
                        r["cdf"],
                        QUANTILES,
                        linestyle="--" if echo else "-",
                        color=colours[(2 * i + echo) % len(colours)],
                        label=f"{SCENARIOS[name].title} ({r['server']})",
                    )
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of calls")
        ax.set_title("gRPC latency at saturation: flagedge (solid) and echo server (dashed)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        save(fig, "grpc_latency.png")

    prop = s.get("propagation")
    if prop and any(r.get("cdf") for r in prop["rows"]):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in prop["rows"]:
            label = r["run"] + (
                f" ({r['load_rate_achieved']} calls/s)" if r["run"] != "idle" else ""
            )
            ax.plot(r["cdf"], QUANTILES, label=label)
        ax.set_xlabel("write -> edge answers, ms")
        ax.set_ylabel("fraction of flips x edges")
        ax.set_title(f"Propagation latency, {prop['rows'][0]['edges']} edges")
        ax.grid(True, alpha=0.3)
        ax.legend()
        save(fig, "propagation.png")

    scaling = s.get("scaling")
    if scaling:
        rec = scaling.get("recorded_16core")
        panels = 2 if rec else 1
        fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
        series = [("this machine, this run", scaling["rows"])]
        if rec:
            series.append((f"recorded 16-core machine, {rec['date']}", rec["rows"]))
        for ax, (title, rows) in zip(axes[0], series, strict=True):
            for scenario in dict.fromkeys(r["scenario"] for r in rows):
                pts = [
                    (r["workers"], r["evals_per_s"])
                    for r in rows
                    if r["scenario"] == scenario and r.get("evals_per_s")
                ]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, marker="o", label=f"{scenario} evals/s")
            ax.set_xlabel("serve --workers")
            ax.set_ylabel("evaluations/s")
            ax.set_yscale("log")
            ax.set_title(title, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        save(fig, "scaling.png")

    cost, memory = s.get("cost"), s.get("memory")
    if cost or memory:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        if cost:
            xs = [r["flags"] for r in cost["rows"]]
            axes[0].plot(xs, [r["compile_ms"] for r in cost["rows"]], marker="o")
            axes[0].set_title(f"compile, ms (n^{cost['compile_growth_exponent']})", fontsize=9)
            axes[1].plot(xs, [r["kill_us"] for r in cost["rows"]], marker="o", color="C1")
            axes[1].set_title(f"kill switch, µs (n^{cost['kill_growth_exponent']})", fontsize=9)
        if memory:
            xs = [r["flags"] for r in memory["rows"]]
            axes[2].plot(xs, [r["rss_mib"] for r in memory["rows"]], marker="o", color="C2")
            axes[2].set_title("RSS of one edge process, MiB", fontsize=9)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("flags in the set")
            ax.grid(True, which="both", alpha=0.3)
        save(fig, "cost.png")
    return written
