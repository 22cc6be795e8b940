"""Shared fixtures for the engine benchmarks (pytest-benchmark; never timed assertions)."""

from __future__ import annotations

import pytest

from flagedge.bench import workloads as W
from flagedge.snapshot import Snapshot


@pytest.fixture(scope="session")
def mixed() -> Snapshot:
    return Snapshot.build(W.mixed_doc(200))
