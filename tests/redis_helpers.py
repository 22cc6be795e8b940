"""Real processes for the control-plane tests: redis-server on a free port in a temporary
directory (never the system Redis), ``flagedge serve --redis`` edges, and the ops CLI.

Every wait is bounded and polls; nothing asserts on speed."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from flagedge import cli
from flagedge.client import Client

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SERVING = re.compile(r"serving gRPC on [^ ]+:(\d+), management on [^ ]+:(\d+)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a server still starting, a connection refused
            last = exc
        else:
            if last:
                return last
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class RedisServer:
    """A redis-server child. ``persist`` keeps an append-only file in ``directory`` so that a
    restart after SIGKILL comes back with its data."""

    def __init__(self, directory: Path, *, persist: bool = False, config: str = ""):
        self.directory = directory
        self.persist = persist
        self.config = config  # redis.conf lines, e.g. ACL users
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"
        conf.write_text(self.config)
        args = [
            REDIS_SERVER,
            str(conf),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.process = subprocess.Popen(args)
        wait_until("redis-server to answer", self._pings, 15)
        return self

    def _pings(self) -> bool:
        with contextlib.closing(self.client()) as c:
            try:
                return bool(c.ping())
            except (redis.ResponseError, redis.AuthenticationError):  # it wants a password
                return True

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, **kwargs)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self, *, empty: bool = False) -> RedisServer:
        self.kill()
        if empty:
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.start()


class Edge:
    """A ``flagedge serve --redis`` child; stderr lines are kept (and searchable)."""

    def __init__(self, redis_url: str, env: str, lkg: Path, *extra: str) -> None:
        self.args = [
            sys.executable,
            "-m",
            "flagedge",
            "serve",
            "--host=127.0.0.1",
            "--port=0",
            "--management-port=0",
            "--ofrep-port=0",
            "--workers=1",
            f"--redis={redis_url}",
            f"--env={env}",
            f"--lkg-file={lkg}",
            "--redis-check-interval=0.5",
            "--grace=1",
            *extra,
        ]
        self.log: list[str] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(self.args, stderr=subprocess.PIPE, text=True)
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self.port = self.management_port = 0
        self.client: Client | None = None

    def wait_serving(self) -> Edge:
        found = self.wait_log(SERVING)
        self.port, self.management_port = int(found.group(1)), int(found.group(2))
        self.client = Client(f"127.0.0.1:{self.port}")
        return self

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.log.append(line)
                self._cond.notify_all()

    def wait_log(
        self, pattern: str | re.Pattern[str], timeout: float = 30.0, since: int = 0
    ) -> re.Match[str]:
        """The first log line from index ``since`` on that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                for line in self.log[seen:]:
                    found = re.search(pattern, line)
                    if found:
                        return found
                seen = max(seen, len(self.log))
                left = deadline - time.monotonic()
                exited = self.process.poll() is not None and not self._pump.is_alive()
                if left <= 0 or exited:
                    raise AssertionError(f"no log line matched {pattern!r}:\n{self.text()}")
                self._cond.wait(min(left, 0.2))

    def mark(self) -> int:
        with self._cond:
            return len(self.log)

    def text(self) -> str:
        with self._cond:
            return "".join(self.log)

    def readyz(self) -> dict[str, Any]:
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

    def stop(self) -> int:
        if self.client is not None:
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._pump.join(5)
            if self.process.stderr is not None:
                self.process.stderr.close()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def flagctl(*argv: str) -> tuple[int, str, str]:
    """Run the ``flagedge`` CLI in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def document(**defaults: str) -> dict[str, Any]:
    """Boolean flags named by keyword, each defaulting to the variant given."""
    return {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": default,
            }
            for key, default in defaults.items()
        }
    }


@contextlib.contextmanager
def edges(redis_url: str, env: str, directory: Path, count: int) -> Iterator[list[Edge]]:
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
