"""A quick run of benchmarks/sync_propagation.py: a real redis-server, a real edge, a real
in-process provider and both stream clients see every flip, and the report holds every
figure. Correctness only; never timed."""

from __future__ import annotations

import pytest

from benchmarks.sync_propagation import run


@pytest.mark.parametrize("client", ["probe", "grpcio"])
def test_a_tiny_run_measures_every_flip_for_providers_and_streams(client: str) -> None:
    results = run(
        flags=5,
        providers=1 if client == "probe" else 0,
        flips=4,
        streams=12,
        stream_flips=3,
        stream_procs=1,
        channels=2,
        client=client,
    )
    assert results["flags"] == 6 and results["message_bytes"] > 0
    runs = {r["run"]: r for r in results["runs"]}
    assert set(runs) == ({"providers", "streams"} if client == "probe" else {"streams"})
    streams = runs["streams"]
    assert (streams["clients"], streams["flips"], streams["client"]) == (12, 3, client)
    assert 0 < streams["first_p50_ms"] <= streams["last_max_ms"]
    if "providers" in runs:
        providers = runs["providers"]
        assert (providers["clients"], providers["flips"]) == (1, 4)
        assert 0 < providers["arrival_p50_ms"] <= providers["max_ms"]
        assert providers["provider_load_p50_ms"] >= 0
    for r in runs.values():
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["edge_cpu_ms_per_flip"] >= 0  # (clock ticks: a tiny run may count none)
