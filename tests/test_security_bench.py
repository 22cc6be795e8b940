"""``flagedge bench load`` measures a secured deployment: TLS trusting a CA, a token from a
file on every call; without the token the checking call says why, and the run stops (exit
2) before loading anything."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flagedge.auth import entry_for, new_token
from flagedge.bench.load import bench_doc
from tests.support.processes import SERVING_TEXT, ServeProcess
from tests.support.tls import Authority


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    directory = tmp_path_factory.mktemp("bench")
    ca = Authority()
    cert, key = ca.issue("edge").write(directory, "server")
    token = new_token()
    auth = directory / "auth.json"
    auth.write_text(json.dumps({"tokens": [entry_for("bench", token, ["evaluate"])]}))
    token_file = directory / "token"
    token_file.write_text(token)
    flags = directory / "flags.json"
    flags.write_text(json.dumps(bench_doc()))
    server = ServeProcess(
        f"--flags={flags}",
        "--port=0",
        "--management-port=0",
        "--workers=1",
        f"--server-cert-path={cert}",
        f"--server-key-path={key}",
        f"--auth-file={auth}",
        text=True,
    )
    port = int(server.next_line(SERVING_TEXT).group(2))
    yield port, ca.write(directory / "ca.crt"), token_file
    server.stop()


def _load(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "flagedge", "bench", "load"),
            *(f"--target=127.0.0.1:{port}", "--scenario=resolve,evaluate", "--duration=0.5"),
            *("--channels=1", "--concurrency=2", "--json", *args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_load_drives_a_tls_edge_with_a_token(secured: tuple[int, Path, Path]) -> None:
    port, ca, token_file = secured
    done = _load(port, f"--tls-ca={ca}", f"--token-file={token_file}")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["scenario"] for r in rows} == {"resolve", "evaluate"}
    assert all(r["calls"] > 0 and r["errors"] == 0 for r in rows)


def test_bench_load_without_the_token_stops_with_the_servers_answer(
    secured: tuple[int, Path, Path],
) -> None:
    port, ca, _ = secured
    done = _load(port, f"--tls-ca={ca}")
    assert done.returncode == 2 and "UNAUTHENTICATED" in done.stderr, done.stderr
    done = _load(port, f"--tls-ca={ca}", "--tls-cert=/nonexistent")
    assert done.returncode == 2 and "--tls-cert and --tls-key go together" in done.stderr
