"""``flagedge serve`` as a child process, its stderr kept line by line and searchable.

    ServeProcess(*args)                  any serve command line (JSON logs unless text=True)
    Edge(redis_url, env, lkg, *args)     a Redis-fed edge on ports 0, quick to notice changes
    edges(redis_url, env, directory, n)  n edges, started together, stopped at the end

Every wait is bounded and polls; nothing asserts on speed.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flagedge.client import Client

from .wait import wait_until

# What a worker logs once it serves: "[pid] serving gRPC on HOST:PORT, management on HOST:PORT"
# (the pid is in the text format only; the JSON format has it as a field).
SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")
SERVING_TEXT = re.compile(r"\[(\d+)\] serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")


class LoggedProcess:
    """A child process; a thread keeps every line of its stderr (``log``), which the tests
    wait on. ``stop`` sends SIGTERM and waits ``stop_wait`` seconds before SIGKILL."""

    stop_wait = 30.0

    def __init__(self, args: list[str], *, stdout: int | None = None) -> None:
        self.args = args
        self.log: list[str] = []
        self._cursor = 0  # where next_line looks from
        self._cond = threading.Condition()
        self.process = subprocess.Popen(self.args, stderr=subprocess.PIPE, stdout=stdout, text=True)
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.log.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()  # the end of the output: waiters stop waiting

    # -- the log ------------------------------------------------------------------------------

    def wait_log(
        self, pattern: str | re.Pattern[str], timeout: float = 30.0, since: int = 0
    ) -> re.Match[str]:
        """The first log line from index ``since`` on that matches ``pattern``."""
        found, _ = self._find(pattern, timeout, since)
        return found

    def next_line(self, pattern: str | re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The next log line, after the one the previous call matched, matching ``pattern``."""
        found, index = self._find(pattern, timeout, self._cursor)
        self._cursor = index + 1
        return found

    def _find(
        self, pattern: str | re.Pattern[str], timeout: float, since: int
    ) -> tuple[re.Match[str], int]:
        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                for index in range(seen, len(self.log)):
                    found = re.search(pattern, self.log[index])
                    if found:
                        return found, index
                seen = max(seen, len(self.log))
                left = deadline - time.monotonic()
                ended = not self._pump.is_alive()
                if left <= 0 or ended:
                    raise AssertionError(f"no log line matched {pattern!r}:\n{''.join(self.log)}")
                self._cond.wait(min(left, 0.2))

    def mark(self) -> int:
        """The number of lines so far, for ``wait_log(..., since=mark)``."""
        with self._cond:
            return len(self.log)

    def text(self) -> str:
        with self._cond:
            return "".join(self.log)

    def records(self) -> list[dict[str, Any]]:
        """Every line so far, as the JSON object it must be."""
        with self._cond:
            lines = list(self.log)
        return [json.loads(line) for line in lines]

    def wait_event(self, name: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        """The JSON records of event ``name`` (with these fields) once there are ``count``."""

        def found() -> list[dict[str, Any]] | None:
            matching = [
                r
                for r in self.records()
                if r["event"] == name and all(r.get(k) == v for k, v in fields.items())
            ]
            return matching if len(matching) >= count else None

        result: list[dict[str, Any]] = wait_until(f"{count} {name} event(s)", found)
        return result

    def stop(self) -> int:
        """SIGTERM, and its exit code once it has drained (SIGKILL after ``stop_wait``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.stop_wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._pump.join(10)
            if self.process.stderr is not None:
                self.process.stderr.close()


class ServeProcess(LoggedProcess):
    """``python -m flagedge serve --host=127.0.0.1 ARGS``."""

    def __init__(self, *args: str, text: bool = False) -> None:
        # Text logs for the tests that read the sentences; JSON (the default) for the others.
        super().__init__(
            [
                *(sys.executable, "-m", "flagedge", "serve", "--host=127.0.0.1"),
                *("--sync-port=any", "--ofrep-port=0"),
                *(["--log-format=text"] if text else []),
                *args,
            ]
        )
        self.port = self.management_port = 0
        self.client: Client | None = None

    # -- serving ------------------------------------------------------------------------------

    def wait_serving(self, workers: int = 1) -> ServeProcess:
        """Wait until ``workers`` processes serve; note the ports and open a client."""
        for _ in range(workers):
            found = self.next_line(SERVING)
        self.port, self.management_port = int(found.group(1)), int(found.group(2))
        self.client = Client(f"127.0.0.1:{self.port}")
        return self

    def readyz(self) -> dict[str, Any]:
        """/readyz's JSON body, whatever its status."""
        url = f"http://127.0.0.1:{self.management_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        return body

    def version(self) -> int:
        return int(self.readyz()["version"])

    def value(self, flag: str, context: dict[str, Any] | None = None) -> Any:
        assert self.client is not None
        return self.client.evaluate(flag, context).value

    # -- signals ------------------------------------------------------------------------------

    def stop(self) -> int:
        """SIGTERM, and its exit code once it has drained (SIGKILL after 30 s)."""
        if self.client is not None:
            self.client.close()
            self.client = None
        return super().stop()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


class Edge(ServeProcess):
    """``flagedge serve --redis``: one worker unless ``args`` say otherwise, ports 0, a Redis
    version check every half second, one second of grace."""

    def __init__(self, redis_url: str, env: str, lkg: Path, *args: str) -> None:
        super().__init__(
            "--port=0",
            "--management-port=0",
            "--workers=1",
            f"--redis={redis_url}",
            f"--env={env}",
            f"--lkg-file={lkg}",
            "--redis-check-interval=0.5",
            "--grace=1",
            *args,
        )
        workers = [a for a in self.args if a.startswith("--workers=")]
        self.workers = int(workers[-1].partition("=")[2])

    def wait_serving(self, workers: int | None = None) -> Edge:
        super().wait_serving(self.workers if workers is None else workers)
        return self


@contextlib.contextmanager
def edges(redis_url: str, env: str, directory: Path, count: int) -> Iterator[list[Edge]]:
    """``count`` edges, each with its own last-known-good file in ``directory``."""
    started: list[Edge] = []
    try:
        for i in range(count):
            started.append(Edge(redis_url, env, directory / f"lkg-{i}.json"))
        for edge in started:
            edge.wait_serving()
        yield started
    finally:
        for edge in started:
            edge.stop()
