"""The admin service's targets, measured in one run (BENCHMARKS.md, "Admin service"):

    python -m benchmarks.admin                       # 1,000 flags, 3 edges, 30 kills each way
    python -m benchmarks.admin --flags 200 --kills 5 --reads 100 --json out.json

1. First paint of the flags page with --flags flags, in the browser (Debian's chromium via
   Playwright): the Paint Timing API's first-contentful-paint of a fresh navigation, median
   and worst of --paints loads. Target: under 300 ms.
2. API reads: --reads sequential requests each of GET /flags (every flag), GET /flags/{key}
   and GET /edges with a bearer token, timed at the client, after the first read (which
   compiles the pushed state; reported on its own). Target: p99 under 20 ms.
3. Kill propagation, both ways in one run, alternating: a kill clicked in the UI (kill,
   variant, confirm) and a kill from the CLI (``flagedge kill``, in process, straight to
   Redis). For each write: when each of three ``flagedge serve --redis`` edges applied it,
   from its heartbeat (applied_at, the edge's clock) minus the write's time (Redis's
   clock: the audit entry's TIME), which is what ``kill --wait`` prints; the slowest of the
   three per kill. Each kill is followed by a restore (not timed). Target: the UI's p99 the
   same as the CLI's (the same write path), under 5 ms on a machine with spare cores.

Everything runs on loopback and stops at the end: one redis-server, three edges, one admin
service, one headless chromium. It reuses the tests' process helpers (tests.support).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from flagedge.store.redis import RedisAdmin, parse_target
from tests.support.admin import TOKENS, admin_stack
from tests.support.cli import flagctl
from tests.support.processes import edges

ENV = "prod"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


# The first contentful paint of this navigation, from the Paint Timing API (buffered: it may
# have happened before the script asks).
PAINT = """() => new Promise((resolve) => {
    new PerformanceObserver((list) => {
        const entry = list.getEntriesByName('first-contentful-paint')[0];
        if (entry) resolve(entry.startTime);
    }).observe({type: 'paint', buffered: true});
})"""


def document(n: int) -> dict[str, Any]:
    """n flags of the four kinds, with rules like real ones."""
    flags: dict[str, Any] = {
        "switch": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "ops", "owner": "bench"},
        }
    }
    kinds = ("release", "experiment", "ops", "permission")
    for i in range(n - 1):
        kind = kinds[i % 4]
        rule: Any = None
        if kind == "release":
            rule = {"fractional": [["on", 5], ["off", 95]]}
        elif kind == "experiment":
            rule = {"fractional": [["on", 50], ["off", 50]]}
        elif kind == "permission":
            rule = {"if": [{"in": [{"var": "plan"}, ["pro", "enterprise"]]}, "on", "off"]}
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "metadata": {
                "kind": kind,
                "owner": f"team-{i % 17}",
                "description": f"flag number {i} of the benchmark set",
                **({"expires": "2099-01-01"} if kind in ("release", "experiment") else {}),
            },
        }
        if rule is not None:
            flag["targeting"] = rule
        flags[f"flag-{i:04d}"] = flag
    return {"flags": flags}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }


def api_reads(base: str, reads: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, path in (
        ("GET /flags (every flag)", f"/api/v1/envs/{ENV}/flags"),
        ("GET /flags/{key}", f"/api/v1/envs/{ENV}/flags/flag-0003"),
        ("GET /edges", f"/api/v1/envs/{ENV}/edges"),
    ):
        times = []
        for _ in range(reads):
            request = urllib.request.Request(
                base + path, headers={"Authorization": f"Bearer {TOKENS['viewer']}"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as r:
                r.read()
            times.append((time.perf_counter() - start) * 1000)
        out[name] = summary(times)
    return out


def reach(admin: RedisAdmin, version: int, written_ms: int, timeout: float = 10.0) -> list[float]:
    """Each edge's apply time of ``version``, in ms after the write (heartbeats)."""
    deadline = time.monotonic() + timeout
    while True:
        beats = admin.edges()
        if beats and all(b.version >= version for b in beats):
            return [(b.applied_at * 1000 - written_ms) for b in beats]
        if time.monotonic() > deadline:
            raise RuntimeError(f"edges did not reach version {version}")
        time.sleep(0.01)


def written_at(admin: RedisAdmin, version: int) -> int:
    (entry,) = [e for e in admin.audit(5) if e.version == version]
    return entry.ts_ms


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=1000)
    parser.add_argument("--paints", type=int, default=10)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    results: dict[str, Any] = {"flags": args.flags}
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server, admin = stack.enter_context(admin_stack(directory, document(args.flags)))
        started = stack.enter_context(edges(server.url, ENV, directory, 3))
        store = RedisAdmin(parse_target(server.url), ENV)
        stack.callback(store.close)
        # The first read after a push compiles the state and samples every flag's typical
        # value: timed on its own; the steady-state reads below start warm.
        start = time.perf_counter()
        api_reads(admin.url, 1)
        results["first_read_after_push_ms"] = round((time.perf_counter() - start) * 1000, 1)
        results["api_reads_ms"] = api_reads(admin.url, args.reads)
        p = stack.enter_context(sync_playwright())
        profile = stack.enter_context(tempfile.TemporaryDirectory())
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        stack.callback(browser.close)
        page = browser.new_page()
        page.goto(f"{admin.url}/login")
        page.fill('input[name="token"]', TOKENS["operator"])
        page.click('[data-action="login"]')
        page.wait_for_selector("[data-flag]")
        results["rows"] = page.locator("[data-flag]").count()
        paints, floor = [], []
        for _ in range(args.paints):
            page.goto(f"{admin.url}/envs/{ENV}/flags")
            paints.append(float(page.evaluate(PAINT)))
            # The browser's own floor on this machine: the same CSS and script, a tiny page.
            page.goto(f"{admin.url}/envs/{ENV}/flags?q=no-such-flag-at-all")
            floor.append(float(page.evaluate(PAINT)))
        results["first_paint_ms"] = summary(paints)
        results["first_paint_empty_page_ms"] = summary(floor)

        ui, cli = [], []
        for _ in range(args.kills):
            # the UI: the kill button, a variant, the confirmation
            page.goto(f"{admin.url}/envs/{ENV}/flags/switch")
            page.click('[data-action="kill"]')
            page.select_option('select[name="variant"]', "off")
            with page.expect_response(lambda r: r.url.endswith("/kill")):
                page.locator('[data-action="confirm"]:visible').click()
            # The page reloads at once, so the answer's body is gone: the audit has the write.
            (entry,) = store.audit(1, "switch")
            assert entry.action == "kill"
            ui.append(max(reach(store, entry.version, entry.ts_ms)))
            flagctl("restore", "switch", f"--redis={server.url}", f"--env={ENV}", "--actor=b")
            # the CLI: flagedge kill, straight to Redis
            code, out, err = flagctl(
                "kill", "switch", "--variant", "off", f"--redis={server.url}", f"--env={ENV}",
                "--actor=bench", "--json",
            )  # fmt: skip
            assert code == 0, err
            version = json.loads(out)["version"]
            cli.append(max(reach(store, version, written_at(store, version))))
            flagctl("restore", "switch", f"--redis={server.url}", f"--env={ENV}", "--actor=b")
        results["kill_to_three_edges_ms"] = {"ui": summary(ui), "cli": summary(cli)}
        results["edges"] = len(started)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
