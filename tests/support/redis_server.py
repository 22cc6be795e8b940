"""redis-server children for the control-plane tests: each in a temporary directory, on a
port of its own (never the system Redis on 6379), killed by the test that started it.

    RedisServer(directory).start()                         plain
    RedisServer(directory, persist=True)                   an append-only file: a restart
                                                           after SIGKILL keeps the data
    RedisServer(directory, config="user ...", username=..., password=...)   ACL users
    RedisServer(directory, tls=Tls(...))                   TLS only, on the port
    RedisServer(directory, sentinel=True, config="sentinel monitor ...")    a sentinel

redis-server cannot bind port 0 and say which port it got, so ``start`` gives it a port that
was free a moment ago and watches it come up (ports.py): it is ready once the server on that
port reports this child's process id; if the child exits saying the address is in use,
another process took the port first, and it starts again on another one. ``restart`` keeps
the port, as edges hold the URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .ports import PortTaken, free_port, on_a_free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
IN_USE = "Address already in use"


@dataclasses.dataclass(frozen=True, slots=True)
class Tls:
    """Certificate files for a TLS-only server (clients are not asked for certificates)."""

    ca: Path
    cert: Path
    key: Path


class RedisExited(AssertionError):
    """redis-server stopped while starting, for a reason other than a taken port."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(f"redis-server exited with {code}:\n{log}")
        self.log = log


class RedisServer:
    """A redis-server child; ``port`` is known once ``start`` has returned."""

    def __init__(
        self,
        directory: Path,
        *,
        persist: bool = False,
        config: str = "",
        username: str | None = None,
        password: str | None = None,
        tls: Tls | None = None,
        sentinel: bool = False,
        pick_port: Callable[[], int] = free_port,
    ) -> None:
        self.directory = directory
        self.persist = persist
        self.config = config  # redis.conf lines, e.g. ACL users or what a sentinel monitors
        self.username = username
        self.password = password
        self.tls = tls
        self.sentinel = sentinel
        self.pick_port = pick_port
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client of this server, authenticated and over TLS as the server wants."""
        options: dict[str, Any] = {"port": self.port, "socket_timeout": 5}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if self.tls is not None:
            options |= {"ssl": True, "ssl_ca_certs": str(self.tls.ca)}
        return redis.Redis(**(options | kwargs))

    def start(self) -> RedisServer:
        if self.port:  # a restart: the same port, which clients already know
            return self._start_pinned()
        return on_a_free_port(self._start_on, pick=self.pick_port)

    def restart(self, *, empty: bool = False) -> RedisServer:
        """SIGKILL, then start again on the same port (``empty``: without its data)."""
        self.kill()
        if empty:
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.start()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def _start_pinned(self) -> RedisServer:
        # Nothing else should want this port between a kill and a start: a few short
        # retries cover a process that held it for a moment; then say so plainly.
        for _ in range(20):
            try:
                return self._start_on(self.port)
            except PortTaken:
                time.sleep(0.1)
        raise AssertionError(f"port {self.port} is taken; cannot restart redis-server on it")

    def _start_on(self, port: int) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "redis.conf"  # a sentinel rewrites its file: one of its own
        conf.write_text(self.config)
        log_from = self.log.stat().st_size if self.log.exists() else 0
        self.port = port
        self.process = subprocess.Popen([REDIS_SERVER, str(conf), *self._options(port)])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self._log_since(log_from)
                if IN_USE in said:
                    raise PortTaken(port)
                raise RedisExited(self.process.returncode, said)
            if self._answers_as_ours():
                return self
            time.sleep(0.02)
        self.kill()
        raise AssertionError(f"redis-server did not answer on port {port}:\n{self._log_since(0)}")

    def _options(self, port: int) -> list[str]:
        options = ["--bind", "127.0.0.1", "--dir", str(self.directory), "--logfile", str(self.log)]
        if self.tls is None:
            options += ["--port", str(port)]
        else:
            options += ["--port", "0", "--tls-port", str(port)]
            options += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key)]
            options += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        if self.sentinel:
            return [*options, "--sentinel"]
        options += ["--save", "", "--daemonize", "no"]
        if self.persist:
            return [*options, "--appendonly", "yes", "--appendfsync", "always"]
        return [*options, "--appendonly", "no"]

    def _answers_as_ours(self) -> bool:
        """The server on the port is this child (not one that took the port first)."""
        assert self.process is not None
        # One try, one second: redis-py's default retries would wait on a squatter that
        # accepts and never answers for many seconds.
        client = self.client(
            socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        with contextlib.closing(client):
            try:
                return int(client.info("server")["process_id"]) == self.process.pid
            except redis.RedisError:  # not listening yet, or still loading its data
                return False

    def _log_since(self, offset: int) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
