"""What a report says about where and when it ran: the machine, the versions, the revision."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Distributions whose versions every report records (missing ones are recorded as null).
LIBRARIES = (
    "flagedge",
    "grpcio",
    "protobuf",
    "orjson",
    "mmh3",
    "cbor2",
    "uvloop",
    "redis",
    "matplotlib",
)
PEERS = (
    "openfeature-flagd-core",
    "flagsmith-flag-engine",
    "growthbook",
    "launchdarkly-server-sdk",
    "yggdrasil-engine",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _redis_server() -> str | None:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip() or None


def machine() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "os": _os_name(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "peers": {name: _version(name) for name in PEERS},
        "redis_server": _redis_server(),
    }


def git() -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "revision": run("rev-parse", "HEAD"),
        "branch": run("rev-parse", "--abbrev-ref", "HEAD"),
        "subject": run("log", "-1", "--format=%s"),
        "dirty": bool(status) if status is not None else None,
        "dirty_files": status.splitlines()[:20] if status else [],
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
