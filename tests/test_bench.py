"""The benchmark suite as a product: ``scripts/bench`` writes a well-formed report, the
regression check fails on a regression and passes an unchanged report, and ``flagedge bench
load`` measures a real server. Never timed assertions: figures only have to be sane."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagedge.bench.load import bench_doc
from tests.support.processes import SERVING_TEXT, ServeProcess

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # ``-m`` puts cwd on sys.path: benchmarks/ is importable from ROOT and not elsewhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    done = run("-m", "benchmarks.suite", "--tiny", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_suite_writes_a_report_with_every_section_machine_and_revision(
    tiny_report: Path,
) -> None:
    report = json.loads((tiny_report / "report.json").read_text())
    for key in ("schema", "mode", "started", "ended", "duration_s", "params", "figures"):
        assert key in report
    assert report["mode"] == "tiny"
    assert report["errors"] == {}
    assert set(report["sections"]) == {
        "engine",
        "cost",
        "memory",
        "grpc",
        "propagation",
        "scaling",
        "peers",
    }
    machine = report["machine"]
    for key in ("cpu_model", "cores", "memory_gib", "os", "python"):
        assert machine[key]
    for lib in ("grpcio", "protobuf", "orjson", "mmh3", "redis"):
        assert machine["libraries"][lib]
    assert machine["peers"]["openfeature-flagd-core"]
    assert len(report["git"]["revision"]) == 40
    assert isinstance(report["git"]["dirty"], bool)
    assert len(report["loadavg"]["start"]) == len(report["loadavg"]["end"]) == 3


def test_every_figure_is_positive_with_a_direction(tiny_report: Path) -> None:
    figures = json.loads((tiny_report / "report.json").read_text())["figures"]
    prefixes = {key.split(".")[0] for key in figures}
    assert prefixes == {"engine", "cost", "memory", "grpc", "propagation", "scaling", "peers"}
    for key, figure in figures.items():
        assert figure["value"] > 0, key
        assert figure["better"] in ("higher", "lower"), key
    assert "grpc.evaluate.vs_echo" in figures
    assert "peers.speedup.flagd-core.static" in figures


def test_the_markdown_report_has_each_section_and_links_its_plots(tiny_report: Path) -> None:
    text = (tiny_report / "report.md").read_text()
    for heading in ("## Summary", "## Engine", "## gRPC", "## Propagation", "## Peers"):
        assert heading in text
    assert "Recorded input, not measured in this run" in text
    report = json.loads((tiny_report / "report.json").read_text())
    if report["plots"]:
        for name in report["plots"]:
            assert (tiny_report / name).stat().st_size > 0
            assert f"]({name})" in text
    else:
        assert "Plots skipped" in text


SUITE_PEERS = ["flagd-core", "flagsmith-engine", "growthbook", "launchdarkly", "unleash-yggdrasil"]


def test_a_run_missing_peers_says_which_and_names_no_fastest_peer(tiny_report: Path) -> None:
    # --tiny measures flagd-core alone: the other four peers of the suite are missing.
    report = json.loads((tiny_report / "report.json").read_text())
    assert sorted(report["sections"]["peers"]["missing"]) == SUITE_PEERS[1:]
    text = (tiny_report / "report.md").read_text()
    assert "fastest peer:" not in text
    headline = next(line for line in text.splitlines() if line.startswith("- **Peers**"))
    assert "partial set" in headline and "no fastest peer named" in headline
    assert all(peer in headline for peer in SUITE_PEERS[1:])
    assert "over flagd-core static " in headline
    assert "**Partial set, so no fastest peer.** Missing: flagsmith-engine (not selected)" in text


def _render(report: dict[str, Any], tmp_path: Path) -> str:
    """report.md of a report.json, as the suite writes it."""
    path = _write(tmp_path / "synthetic.json", report)
    script = "import json, sys; from benchmarks.suite import report; "
    script += "print(report.markdown(json.load(open(sys.argv[1]))), end='')"
    done = run("-c", script, str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_only_a_complete_peer_set_headlines_the_fastest_peer(
    tiny_report: Path, tmp_path: Path
) -> None:
    report = json.loads((tiny_report / "report.json").read_text())
    peers = report["sections"]["peers"]
    del peers["missing"]  # derived from the results, as for reports older than the field
    workloads = ["static", "targeted", "rollout", "all200"]
    peers["results"] = {
        name: {w: {"ns_per_eval": 1000.0 * (i + 1)} for w in workloads}
        for i, name in enumerate(SUITE_PEERS)
    }
    peers["results"]["flagedge"] = {w: {"ns_per_eval": 100.0} for w in workloads}
    peers["speedup"] = {
        name: {w: 10.0 * (i + 1) for w in workloads} for i, name in enumerate(SUITE_PEERS)
    }
    text = _render(report, tmp_path)
    assert (
        "- **Peers**, flagedge's speed-up over the fastest peer: static 10.0x (flagd-core)" in text
    )
    assert "Partial set" not in text

    # flagd-core, the fastest, fails one workload: the rest must not be called the fastest.
    peers["results"]["flagd-core"]["rollout"] = {"error": "ValueError: no"}
    del peers["speedup"]["flagd-core"]["rollout"]
    text = _render(report, tmp_path)
    assert "fastest peer:" not in text
    assert "partial set (missing flagd-core: no fastest peer named)" in text
    assert "Missing: flagd-core (not in this report)" in text


def _write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report))
    return path


def test_the_regression_check_passes_an_identical_report(tiny_report: Path) -> None:
    base = tiny_report / "report.json"
    done = run("-m", "benchmarks.compare", str(base), str(base))
    assert done.returncode == 0, done.stdout
    assert "no regression" in done.stdout


def test_the_regression_check_fails_on_a_gated_figure_worse_than_the_threshold(
    tiny_report: Path, tmp_path: Path
) -> None:
    base = json.loads((tiny_report / "report.json").read_text())
    worse = copy.deepcopy(base)
    worse["figures"]["grpc.evaluate.vs_echo"]["value"] *= 0.5  # higher is better
    worse["figures"]["cost.compile.100.ms"]["value"] *= 1.2  # lower is better, within 25%
    new = _write(tmp_path / "new.json", worse)
    done = run("-m", "benchmarks.compare", str(new), str(tiny_report / "report.json"))
    assert done.returncode == 1
    flagged = [line for line in done.stdout.splitlines() if "REGRESSION" in line]
    assert len(flagged) == 1 and flagged[0].startswith("grpc.evaluate.vs_echo")
    # A tighter threshold catches the compile time too.
    done = run(
        "-m", "benchmarks.compare", str(new), str(tiny_report / "report.json"), "--threshold=0.1"
    )
    assert sum("REGRESSION" in line for line in done.stdout.splitlines()) == 2


def test_absolute_figures_fail_the_check_only_when_asked(tiny_report: Path, tmp_path: Path) -> None:
    base = json.loads((tiny_report / "report.json").read_text())
    worse = copy.deepcopy(base)
    worse["figures"]["grpc.evaluate.flagedge.p99_ms"]["value"] *= 3
    new = _write(tmp_path / "new.json", worse)
    old = str(tiny_report / "report.json")
    assert run("-m", "benchmarks.compare", str(new), old).returncode == 0
    assert run("-m", "benchmarks.compare", str(new), old, "--gate=all").returncode == 1


@pytest.fixture
def bench_server(tmp_path: Path) -> Iterator[int]:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps(bench_doc()))
    server = ServeProcess(
        f"--flags={flags}", "--port=0", "--management-port=0", "--workers=1", text=True
    )
    yield int(server.next_line(SERVING_TEXT).group(2))
    server.stop()


def test_bench_load_measures_a_real_server_and_prints_json_rows(
    bench_server: int, tmp_path: Path
) -> None:
    # From a directory without benchmarks/: the tool is the installed package's.
    done = run(
        "-m",
        "flagedge",
        *("bench", "load", "--target", f"127.0.0.1:{bench_server}"),
        *("--scenario", "evaluate,resolve,all", "--duration", "0.4", "--json"),
        *("--channels", "1", "--concurrency", "4"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["scenario"] for r in rows] == ["evaluate", "resolve", "all"]
    for row in rows:
        assert row["calls"] > 0 and row["rpc_per_s"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"]
        assert row["cdf"] == sorted(row["cdf"])
    assert rows[2]["evals_per_call"] == len(bench_doc()["flags"])


def test_bench_load_stops_with_the_servers_message_for_a_missing_flag(bench_server: int) -> None:
    done = run(
        "-m",
        "flagedge",
        *("bench", "load", "--target", f"127.0.0.1:{bench_server}"),
        *("--scenario", "resolve", "--flag", "no-such-flag", "--duration", "0.2"),
    )
    assert done.returncode == 2
    assert "no-such-flag" in done.stderr and "NOT_FOUND" in done.stderr


def test_bench_load_help_needs_no_benchmarks_folder(tmp_path: Path) -> None:
    done = run("-m", "flagedge", "bench", "load", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "--target" in done.stdout and "v1_resolve_all" in done.stdout
