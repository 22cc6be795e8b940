"""Fixtures every test module may use. Helpers live in tests/support/ (a package, imported
as ``tests.support.<module>``); their asserts are rewritten like the tests' own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.support")

from tests.support.documents import switch  # noqa: E402  (after the rewrite hook)
from tests.support.redis_server import RedisServer  # noqa: E402


@pytest.fixture
def redis_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, in a temporary directory, killed at the end.

    ``@pytest.mark.redis_server(persist=True)`` gives it an append-only file, so that a
    restart after SIGKILL comes back with its data."""
    marker = request.node.get_closest_marker("redis_server")
    options = {} if marker is None else dict(marker.kwargs)
    server = RedisServer(tmp_path / "redis", **options).start()
    yield server
    server.kill()


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    """flags.json with one boolean flag, "switch", on."""
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(switch("on")))
    return path
