"""Structured logs (flagedge.logs) from real ``flagedge serve`` processes: one JSON object a
line, with ts, level, event, msg, logger and pid, for startup, apply, reject and shutdown;
``--log-level`` is honoured. (A Redis edge's events: test_metrics.py.)"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from tests.support.documents import switch_and_other
from tests.support.ports import PortTaken, on_a_free_port
from tests.support.processes import ServeProcess


def test_serve_logs_one_json_object_per_line_for_startup_apply_reject_and_shutdown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch_and_other("on")))
    served = ServeProcess(
        f"--flags={path}", "--port=0", "--management-port=0", "--workers=1", "--poll-interval=0.05"
    )
    try:
        (startup,) = served.wait_event("startup")
        assert (startup["level"], startup["version"], startup["flags"]) == ("info", 1, 2)
        assert startup["source"] == str(path) and startup["port"] > 0
        datetime.strptime(startup["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")  # ISO 8601, UTC

        path.write_text(json.dumps(switch_and_other("nowhere")))  # names no variant: rejected
        (reject,) = served.wait_event("reject")
        assert reject["level"] == "error" and reject["source"] == str(path)
        assert any("nowhere" in p["message"] for p in reject["problems"])
        assert all(set(p) == {"path", "message"} for p in reject["problems"])

        path.write_text(json.dumps(switch_and_other("off")))
        (apply,) = served.wait_event("apply")
        assert (apply["version"], apply["flags"], apply["changed"]) == (2, 2, 1)
        assert apply["source"] == str(path)
        assert served.stop() == 0
        assert [r["event"] for r in served.records()][-2:] == ["shutdown", "stopped"]
        assert {"ts", "level", "event", "msg", "logger", "pid"} <= set(served.records()[0])
    finally:
        served.stop()


def _serve_quietly(path: Path, management: int) -> ServeProcess:
    """At warning level nothing names the ports, so the management port is chosen here; a
    process that finds it taken exits, and on_a_free_port tries another."""
    served = ServeProcess(
        f"--flags={path}",
        "--port=0",
        "--workers=1",
        "--poll-interval=0.05",
        "--log-level=warning",
        f"--management-port={management}",
    )
    ready = f"http://127.0.0.1:{management}/readyz"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            served.stop()
            if "address already in use" in served.text():
                raise PortTaken(management)
            raise AssertionError(f"serve exited with {served.process.returncode}:\n{served.text()}")
        try:
            with urllib.request.urlopen(ready, timeout=5) as response:
                # Ready, and this process (one worker: no supervisor), not one that took
                # the port first.
                if json.loads(response.read())["pid"] == served.process.pid:
                    return served
        except OSError:  # not listening yet
            pass
        time.sleep(0.02)
    served.stop()
    raise AssertionError(f"serve did not become ready:\n{served.text()}")


def test_log_level_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch_and_other("on")))
    served = on_a_free_port(lambda port: _serve_quietly(path, port))
    try:
        path.write_text("{ not json")
        served.wait_event("reject")
        path.write_text(json.dumps(switch_and_other("off")))
        path.write_text("{ broken again")
        served.wait_event("reject", count=2)
    finally:
        assert served.stop() == 0
    assert {r["level"] for r in served.records()} == {"error"}
