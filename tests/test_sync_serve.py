"""``--sync-port`` through the real CLI: ``flagedge serve`` names the sync port in its startup
line and serves flagd's sync service from its flags file, changes included; with --workers
every worker binds the one port; ``off`` starts no sync listener; and the setting resolves
like every other one (command line, FLAGEDGE_SYNC_PORT, config file)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flagedge import config
from flagedge._proto.flagd.sync.v1 import sync_pb2, sync_pb2_grpc
from flagedge.cli.serve import GROUPS as SERVE_GROUPS
from flagedge.errors import ConfigError
from flagedge.serve.config import ServeConfig


def flags_doc(variant: str) -> dict[str, Any]:
    return {
        "flags": {
            "switch": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": variant,
            }
        }
    }


class Serve:
    """``flagedge serve`` with JSON logs; its startup records are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flagedge",
                "serve",
                "--host=127.0.0.1",
                "--ofrep-port=0",
                *args,
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.records: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    self.records.append({"event": "text", "msg": line})
                self._cond.notify_all()

    def startups(self, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.records if r.get("event") == "startup"]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError(f"no startup: {self.records}")
                self._cond.wait(min(left, 0.2))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            if self.process.stderr is not None:
                self.process.stderr.close()


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(flags_doc("on")))
    return path


def sync_stream(port: int) -> tuple[grpc.Channel, Iterator[sync_pb2.SyncFlagsResponse]]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = sync_pb2_grpc.FlagSyncServiceStub(channel)
    return channel, stub.SyncFlags(sync_pb2.SyncFlagsRequest(), timeout=30)


def open_sync_streams(management_port: int) -> float:
    """The /metrics gauge of open SyncFlags calls."""
    url = f"http://127.0.0.1:{management_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    wanted = 'flagedge_active_streams{method="flagd.sync.v1.FlagSyncService/SyncFlags"} '
    (line,) = [line for line in text.splitlines() if line.startswith(wanted)]
    return float(line[len(wanted) :])


def switch_of(message: sync_pb2.SyncFlagsResponse) -> Any:
    return json.loads(message.flag_configuration)["flags"]["switch"]


def test_serve_names_the_sync_port_and_sends_every_change_of_its_file(flag_file: Path) -> None:
    served = Serve(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--sync-port=any",
        "--workers=1",
        "--poll-interval=0.05",
    )
    try:
        (startup,) = served.startups()
        port = startup["sync_port"]
        assert port > 0 and port not in (startup["port"], startup["management_port"])
        assert startup["msg"].startswith("serving gRPC on 127.0.0.1:")
        assert f", sync on 127.0.0.1:{port}, flags from" in startup["msg"]
        channel, stream = sync_stream(port)
        with channel:
            first = next(stream)
            assert switch_of(first)["defaultVariant"] == "on"
            assert switch_of(first)["source"] == str(flag_file)
            flag_file.write_text(json.dumps(flags_doc("off")))
            assert switch_of(next(stream))["defaultVariant"] == "off"
            assert open_sync_streams(startup["management_port"]) == 1
            stream.cancel()
    finally:
        assert served.stop() == 0


def test_every_worker_binds_the_one_sync_port(flag_file: Path) -> None:
    served = Serve(
        f"--flags={flag_file}", "--port=0", "--management-port=0", "--sync-port=any", "--workers=2"
    )
    try:
        starts = served.startups(count=2)
        assert {s["worker"] for s in starts} == {"0", "1"}
        ports = {s["sync_port"] for s in starts}
        assert len(ports) == 1 and ports.pop() > 0
        for _ in range(6):  # new connections each time: the kernel spreads them
            channel, stream = sync_stream(starts[0]["sync_port"])
            with channel:
                assert switch_of(next(stream))["defaultVariant"] == "on"
                stream.cancel()
    finally:
        assert served.stop() == 0


def test_sync_port_off_starts_no_sync_listener(flag_file: Path) -> None:
    served = Serve(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--workers=1",
        env={"FLAGEDGE_SYNC_PORT": "off"},
    )
    try:
        (startup,) = served.startups()
        assert "sync_port" not in startup and "sync on" not in startup["msg"]
    finally:
        assert served.stop() == 0


# -- resolution ------------------------------------------------------------------------------


def serve_config(*argv: str, env: dict[str, str] | None = None) -> ServeConfig:
    groups = SERVE_GROUPS
    parser = argparse.ArgumentParser()
    config.add_options(parser, groups)
    return ServeConfig.from_settings(config.resolve(parser.parse_args(list(argv)), groups, env))


def test_the_sync_port_defaults_to_flagds_and_resolves_like_any_setting(tmp_path: Path) -> None:
    assert serve_config(env={}).sync_port == 8015
    assert serve_config("--sync-port", "9015", env={"FLAGEDGE_SYNC_PORT": "off"}).sync_port == 9015
    assert serve_config(env={"FLAGEDGE_SYNC_PORT": "any"}).sync_port == 0
    assert serve_config(env={"FLAGEDGE_SYNC_PORT": "0"}).sync_port is None  # 0 turns it off
    assert serve_config("--sync-port", "OFF", env={}).sync_port is None
    file = tmp_path / "flagedge.yaml"
    file.write_text('sync-port: "off"\n')
    assert serve_config("--config", str(file), env={}).sync_port is None
    toml = tmp_path / "flagedge.toml"
    toml.write_text("sync-port = 7015\n")
    assert serve_config("--config", str(toml), env={}).sync_port == 7015


def test_a_worker_keeps_its_ports_through_the_hand_off() -> None:
    parent = serve_config("--sync-port", "any", "--ofrep-port", "any", env={})
    assert parent.ports() == {
        "port": 8013,
        "management_port": 8014,
        "sync_port": 0,
        "ofrep_port": 0,
    }
    worker = parent.for_worker(
        {"port": 1, "management_port": 2, "sync_port": 3, "ofrep_port": 4}, "/x"
    )
    back = ServeConfig.from_json(worker.to_json())
    assert (back.port, back.management_port, back.sync_port, back.ofrep_port) == (1, 2, 3, 4)
    off = serve_config("--sync-port", "off", "--ofrep-port", "0", env={})
    assert "sync_port" not in off.ports() and "ofrep_port" not in off.ports()
    kept = ServeConfig.from_json(off.for_worker({"port": 1, "management_port": 2}, "/x").to_json())
    assert kept.sync_port is None and kept.ofrep_port is None


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        ("env", "-3", "not a port"),
        ("env", "8o15", "FLAGEDGE_SYNC_PORT"),
        ("yaml", "off", "quote them"),  # YAML reads a bare off as false
    ],
)
def test_a_sync_port_that_does_not_parse_is_refused_with_why(
    tmp_path: Path, where: str, value: str, says: str
) -> None:
    if where == "env":
        with pytest.raises(ConfigError, match=says):
            serve_config(env={"FLAGEDGE_SYNC_PORT": value})
    else:
        file = tmp_path / "flagedge.yaml"
        file.write_text(f"sync-port: {value}\n")
        with pytest.raises(ConfigError, match=says):
            serve_config("--config", str(file), env={})
