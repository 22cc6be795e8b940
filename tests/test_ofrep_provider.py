"""Every golden case through OpenFeature's OFREP provider (openfeature-provider-ofrep, which
calls the single-flag endpoint with `requests`) and the OpenFeature SDK: the answers flagd's
gRPC protocol gives, by value type, reason, variant and error code.

OFREP requests carry no type, so the provider checks it: a value whose JSON type is not the
requested one is the provider's TYPE_MISMATCH, where flagd's typed gRPC call converts (an
integer variant asked for as a float, a 3.14 variant asked for as an integer). Those two
golden cases are named below with what an OFREP client sees instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as OFErrorCode

from flagedge.server.web import RunningHttp, start_http
from flagedge.snapshot import Snapshot, SnapshotHolder
from tests.support.golden import load_cases, same_json

DEFAULT_NOW = 1_700_000_000

# The provider's own type check replaces flagd's conversion for these two cases.
PROVIDER_TYPE_CHECK = {
    "float: requesting an integer on a 3.14 variant truncates to 3 in flagd",
    "float: an integer variant requested as float comes back as a float",
}

# A default of each requested type that no golden case expects, so a default is visible.
DEFAULTS: dict[str, Any] = {
    "boolean": False,
    "string": "<code default>",
    "integer": -987654,
    "float": -9.87654,
    "object": {"code": "default"},
}


class Edge:
    """An OFREP listener on its own thread and event loop; the test thread swaps snapshots
    and the clock between cases (SnapshotHolder.install is thread-safe)."""

    def __init__(self) -> None:
        self.holder = SnapshotHolder()
        self.now = DEFAULT_NOW
        self.version = 0
        self.loop = asyncio.new_event_loop()
        self.running: RunningHttp | None = None
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.running = await start_http(self.holder, clock=lambda: self.now, grace=0.5)
                started.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(30)

    @property
    def url(self) -> str:
        assert self.running is not None
        return f"http://127.0.0.1:{self.running.port}"

    def install(self, snap: Snapshot) -> None:
        self.version += 1
        self.holder.install(snap, force=True)

    def close(self) -> None:
        running = self.running
        assert running is not None
        asyncio.run_coroutine_threadsafe(running.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    served = Edge()
    yield served
    served.close()


@pytest.fixture(scope="module")
def client(edge: Edge) -> Iterator[OpenFeatureClient]:
    api.set_provider(OFREPProvider(edge.url, timeout=10), domain="ofrep-golden")
    yield api.get_client("ofrep-golden")
    api.clear_providers()


_SNAPSHOTS: dict[tuple[str, str], Snapshot] = {}


def _requested_type(case: dict[str, Any]) -> str:
    if case.get("type"):
        return str(case["type"])
    value = case["expect"].get("value")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict):
        return "object"
    return "string"


def _context(raw: dict[str, Any] | None) -> EvaluationContext:
    attributes = dict(raw or {})
    key = attributes.pop("targetingKey", None)
    if key is not None and not isinstance(key, str):
        attributes["targetingKey"] = key  # sent as is; the server judges it
        key = None
    return EvaluationContext(targeting_key=key, attributes=attributes)


def _params() -> list[Any]:
    out = []
    for i, (stem, case, doc) in enumerate(load_cases()):
        out.append(pytest.param(stem, case, doc, id=f"{stem}[{i}]"))
    return out


@pytest.mark.parametrize(("stem", "case", "doc"), _params())
def test_golden_case_through_the_ofrep_provider(
    edge: Edge, client: OpenFeatureClient, stem: str, case: dict[str, Any], doc: dict[str, Any]
) -> None:
    scheme = case.get("fractional", "v3")
    snap = _SNAPSHOTS.get((stem, scheme))
    if snap is None:
        snap = _SNAPSHOTS[stem, scheme] = Snapshot.build(doc, fractional=scheme)
    edge.install(snap)
    edge.now = case.get("now", DEFAULT_NOW)
    flag_type = _requested_type(case)
    default = DEFAULTS[flag_type]
    method = getattr(client, f"get_{flag_type}_details")
    details = method(case["flag"], default, _context(case.get("context")))

    expect = case["expect"]
    label = case["name"]
    if label in PROVIDER_TYPE_CHECK:
        assert details.error_code is OFErrorCode.TYPE_MISMATCH, label
        assert details.value == default
        return
    code = expect.get("errorCode")
    if code is not None:
        assert details.error_code is not None, f"{label}: {details}"
        assert details.error_code.value == code, f"{label}: {details}"
        assert details.reason == "ERROR" and details.value == default
        return
    assert details.error_code is None, f"{label}: {details}"
    assert details.reason == expect["reason"], f"{label}: {details}"
    assert details.variant == expect.get("variant"), f"{label}: {details}"
    wanted = expect.get("value")
    if wanted is None:
        assert details.value == default, f"{label}: the code default, got {details.value!r}"
    else:
        assert same_json(details.value, wanted), f"{label}: {details.value!r}"
    if "metadata" in expect:
        assert same_json(dict(details.flag_metadata), expect["metadata"]), label


def test_every_value_type_is_covered() -> None:
    types = {_requested_type(case) for _, case, _ in load_cases() if case["expect"].get("value")}
    assert types >= {"boolean", "string", "integer", "float", "object"}
