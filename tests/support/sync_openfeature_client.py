"""A child process for the test_sync_* tests: the OpenFeature SDK with the flagd provider in
IN_PROCESS mode, syncing from a flagedge sync port, and the parent's handle on it.

It runs in its own process because the provider bundles its own compiled flagd protos, and
one process cannot load two definitions of the same protobuf package (the parent loads
flagedge's). The child is ``python sync_openfeature_client.py PORT [OPTIONS_JSON]``:

    stdout, one JSON object a line: {"event": READY|STALE|ERROR|CHANGED, "flags": [...],
        "t": CLOCK_MONOTONIC ns} as the provider emits them, and one answer per command
    stdin, one command a line:
        {"cmd": "eval", "marker": [flag, value] or null, "cases": [{flag, type, context}]}
            (first wait until string flag ``flag`` answers ``value``: that configuration
            has arrived) -> {"answers": [{value, variant, reason, errorCode, metadata}]}
        {"cmd": "wait", "flag", "type", "want", "context"} -> {"seen": true, "answer"} once
            the flag's answer has every field of ``want`` (value, reason, ...), or
            {"seen": false, "last": ...} after 30 s
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_DEFAULTS = {"boolean": False, "string": "", "integer": 0, "float": 0.0, "object": {}}


def main() -> None:
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import EventDetails, ProviderEvent

    port = int(sys.argv[1])
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    lock = threading.Lock()

    def say(obj: dict[str, Any]) -> None:
        with lock:
            print(json.dumps(obj), flush=True)

    def on(name: str) -> Any:
        def handler(event: EventDetails) -> None:
            flags = sorted(event.flags_changed or [])
            say({"event": name, "flags": flags, "t": time.monotonic_ns()})

        return handler

    for kind, name in (
        (ProviderEvent.PROVIDER_READY, "READY"),
        (ProviderEvent.PROVIDER_STALE, "STALE"),
        (ProviderEvent.PROVIDER_ERROR, "ERROR"),
        (ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, "CHANGED"),
    ):
        api.add_handler(kind, on(name))
    api.set_provider_and_wait(
        FlagdProvider(
            host="127.0.0.1",
            port=port,
            resolver_type=ResolverType.IN_PROCESS,
            deadline_ms=options.get("deadline_ms", 10_000),
            retry_backoff_ms=options.get("retry_backoff_ms", 200),
            retry_backoff_max_ms=options.get("retry_backoff_max_ms", 1000),
            retry_grace_period=options.get("retry_grace_period", 5),
        )
    )
    client = api.get_client()

    def answer(flag: str, kind: str, context: dict[str, Any]) -> dict[str, Any]:
        attributes = dict(context)
        key = attributes.pop("targetingKey", None)
        ctx = EvaluationContext(targeting_key=key, attributes=attributes)
        method = getattr(client, f"get_{kind}_details")
        d = method(flag, _DEFAULTS[kind], ctx)
        reason = str(getattr(d.reason, "value", d.reason))
        code = None if d.error_code is None else str(d.error_code.value)
        return {
            # No variant: the caller's default applies (DISABLED, DEFAULT, ERROR).
            "value": None if d.variant is None else d.value,
            "variant": d.variant,
            "reason": reason,
            "errorCode": code,
            "metadata": dict(d.flag_metadata or {}),
        }

    def matches(got: dict[str, Any], want: dict[str, Any]) -> bool:
        return all(got[k] == v and type(got[k]) is type(v) for k, v in want.items())

    def wait_for(flag: str, kind: str, want: dict[str, Any], context: dict[str, Any]) -> Any:
        deadline = time.monotonic() + 30
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = answer(flag, kind, context)
            if matches(last, want):
                return {"seen": True, "answer": last}
            time.sleep(0.005)
        return {"seen": False, "last": last}

    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "eval":
            marker = command.get("marker")
            if marker:
                found = wait_for(marker[0], "string", {"value": marker[1]}, {})
                if not found["seen"]:
                    say({"error": f"configuration {marker[1]} never arrived", **found})
                    continue
            cases = command["cases"]
            say({"answers": [answer(c["flag"], c["type"], c["context"]) for c in cases]})
        elif command["cmd"] == "wait":
            c = command
            say(wait_for(c["flag"], c["type"], c["want"], c.get("context") or {}))
    api.shutdown()


class InProcessProvider:
    """The parent's handle: start the child on ``port``, read its events and answers."""

    def __init__(self, port: int, **options: Any) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(port), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            (self.events if "event" in message else self.answers).put(message)

    def send(self, command: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.answers.get(timeout=timeout)

    def event(self, *names: str, timeout: float = 30) -> dict[str, Any]:
        """The next event among ``names`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {names} event within {timeout} s")
            try:
                found = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if found["event"] in names:
                return found

    def drain(self) -> None:
        """Forget the events so far (the SDK and the provider both announce readiness, and
        the first configuration arrives as a change of every flag)."""
        while not self.events.empty():
            self.events.get_nowait()

    def wait_for(
        self, flag: str, kind: str, context: dict[str, Any] | None = None, **want: Any
    ) -> dict[str, Any]:
        """Poll the flag in the child until its answer has the fields of ``want``."""
        command = {"cmd": "wait", "flag": flag, "type": kind, "want": want, "context": context}
        return self.send(command)

    def wait_value(
        self, flag: str, kind: str, value: Any, context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.wait_for(flag, kind, context, value=value)

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


if __name__ == "__main__":
    main()
