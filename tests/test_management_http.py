"""The management port on aiohttp: probes, HEAD without a body, /metrics in the format the
scraper asks for, one answer per connection."""

from __future__ import annotations

import asyncio
import json

from flagedge.metrics import ServerMetrics
from flagedge.server.management import start_management
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import build
from tests.support.server import async_test, serving


async def exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # EOF: the server closed it
    writer.close()
    return data


def split(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@async_test
async def test_head_answers_the_status_and_headers_of_get_without_a_body() -> None:
    async with serving(management=True) as (server, _):
        port = server.management_port  # type: ignore[attr-defined]
        get = split(await exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"))
        head = split(await exchange(port, b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert get[0] == head[0] == 200
    assert json.loads(get[2])["status"] == "ready"
    assert head[2] == b"" and head[1]["content-type"] == get[1]["content-type"]


@async_test
async def test_metrics_are_prometheus_text_unless_openmetrics_is_asked_for() -> None:
    metrics = ServerMetrics()
    metrics.bind(SnapshotHolder(build()))
    probe = await start_management(
        "127.0.0.1", 0, lambda: True, metrics=metrics.exposition, negotiate=metrics.negotiated
    )
    try:
        text = split(await exchange(probe.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        openmetrics = split(
            await exchange(
                probe.port,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                b"Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n\r\n",
            )
        )
    finally:
        await probe.close()
        metrics.close()
    assert text[0] == openmetrics[0] == 200
    assert text[1]["content-type"].startswith("text/plain; version=0.0.4")
    assert openmetrics[1]["content-type"].startswith("application/openmetrics-text")
    assert b"flagedge_snapshot_version" in text[2] and not text[2].endswith(b"# EOF\n")
    assert openmetrics[2].endswith(b"# EOF\n")


@async_test
async def test_other_methods_are_405_unknown_paths_404_and_each_answer_closes() -> None:
    server = await start_management("127.0.0.1", 0, lambda: False)
    try:
        post = split(await exchange(server.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        missing = split(await exchange(server.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"))
        metrics = split(await exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        ready = split(await exchange(server.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"))
    finally:
        await server.close()
    assert (post[0], missing[0], metrics[0], ready[0]) == (405, 404, 404, 503)
    assert json.loads(ready[2])["status"] == "not ready"
    assert ready[1]["connection"] == "close"
