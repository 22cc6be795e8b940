"""``serve --workers N``: N server processes sharing the ports, kept alive.

    supervisor ─ reserves the ports (for port 0: one free port, held bound for all)
               ─ starts N workers: ``python -m flagedge serve --worker``, each handed the
                 ServeConfig (serve/config.py) in FLAGEDGE_WORKER_CONFIG, with its index
                 and a metrics directory shared by all (metrics.py)
               ─ a worker that dies is replaced after a backoff: restart-backoff seconds,
                 doubling per death of that slot in the last minute, at most 10 s
               ─ more than 5 deaths of one slot in a minute is a crash loop: stop all, exit 1
               ─ a worker exiting 2 (bad configuration, which a restart cannot fix): stop
                 all, exit 2
               ─ SIGTERM/SIGINT: each worker gets one SIGTERM (a second would cut its drain
                 short) and --grace seconds (plus 5) to drain

Every worker binds the same ports with SO_REUSEPORT, so the kernel spreads connections
across them, and each loads and follows the definitions itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ..logs import event
from .config import WORKER_CONFIG_ENV, ServeConfig

log = logging.getLogger("flagedge.serve")

RESTART_CAP = 10.0
CRASH_WINDOW = 60.0
CRASH_LIMIT = 5


def _reserve(host: str, port: int) -> tuple[int, socket.socket | None]:
    """For port 0, pick one free port for every worker and hold it (bound, never listening)
    so nothing else takes it while they start. SO_REUSEPORT lets the workers bind it too."""
    if port != 0:
        return port, None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock.getsockname()[1], sock


def _exit_words(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with {code}"


def supervise(config: ServeConfig) -> int:
    # Every port on --host, but the management port on --management-host when given.
    management_host = config.security.management_host or config.host
    reserved = {
        name: _reserve(management_host if name == "management_port" else config.host, port)
        for name, port in config.ports().items()
    }
    ports = {name: port for name, (port, _held) in reserved.items()}
    port = ports["port"]
    # Each worker publishes its metrics here, so that any of them can answer a scrape for all.
    shared = tempfile.mkdtemp(prefix="flagedge-metrics-")
    worker_config = config.for_worker(ports, shared)
    command = [sys.executable, "-m", "flagedge", "serve", "--worker"]

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        mine = dataclasses.replace(worker_config, worker_index=str(slot))
        return subprocess.Popen(
            command, env={**os.environ, WORKER_CONFIG_ENV: mine.to_json().decode()}
        )

    workers = [spawn(i) for i in range(config.workers)]
    event(
        log,
        logging.INFO,
        "supervise",
        "supervising %d workers on port %d: %s",
        len(workers),
        port,
        [w.pid for w in workers],
        workers=[w.pid for w in workers],
        **ports,
    )
    stopping = False
    told: set[int] = set()  # pids already sent SIGTERM (a second one cuts a drain short)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None and worker.pid not in told:
                told.add(worker.pid)
                worker.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    restart_at: dict[int, float] = {}  # slot -> when its replacement starts
    deaths: list[list[float]] = [[] for _ in workers]  # slot -> recent death times
    failure = 0
    try:
        while not stopping and not failure:
            now = time.monotonic()
            for slot, worker in enumerate(workers):
                code = worker.poll()
                if code is None or slot in restart_at:
                    continue
                deaths[slot] = [t for t in deaths[slot] if now - t < CRASH_WINDOW] + [now]
                if code == 2:
                    log.error("worker %d exited with 2 (bad configuration); stopping", worker.pid)
                    failure = 2
                    break
                if len(deaths[slot]) > CRASH_LIMIT:
                    log.error(
                        "worker %d %s: %d deaths of its slot in %.0f s, a crash loop; stopping",
                        worker.pid,
                        _exit_words(code),
                        len(deaths[slot]),
                        CRASH_WINDOW,
                    )
                    failure = 1
                    break
                delay = min(RESTART_CAP, config.restart_backoff * 2 ** (len(deaths[slot]) - 1))
                event(
                    log,
                    logging.ERROR,
                    "worker_exit",
                    "worker %d %s; starting another in %.1f s",
                    worker.pid,
                    _exit_words(code),
                    delay,
                    pid=worker.pid,
                    returncode=code,
                    restart_in=delay,
                )
                restart_at[slot] = now + delay
            for slot, when in list(restart_at.items()):
                if now >= when and not stopping and not failure:
                    del restart_at[slot]
                    workers[slot] = spawn(slot)
                    event(
                        log,
                        logging.INFO,
                        "worker_start",
                        "started worker %d in place of one that died",
                        workers[slot].pid,
                        pid=workers[slot].pid,
                    )
            time.sleep(0.2)
        forward(signal.SIGTERM, None)  # the workers not told yet (one started just before)
        deadline = time.monotonic() + config.grace + 5.0
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not drain in time; killing it", worker.pid)
                worker.kill()
                worker.wait()
        if failure:
            return failure
        codes = [w.returncode for w in workers]
        return 0 if all(c == 0 for c in codes) else max(1, *codes)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for _port, held in reserved.values():
            if held is not None:
                held.close()
        shutil.rmtree(shared, ignore_errors=True)
