"""The management HTTP port (flagedge.server.management): /healthz, /readyz and /metrics
for probes and scrapers, one GET and one answer, on a real port."""

from __future__ import annotations

import asyncio
import json
import os

from flagedge.server.management import start_management
from tests.support.server import async_test, serving


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    return await http_send(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


async def http_send(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    if not request.endswith(b"\r\n\r\n"):
        writer.write_eof()  # a request cut short
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head else 0), body  # 0: closed without an answer


class TestManagement:
    @async_test
    async def test_the_management_port_answers_healthz_and_readyz(self) -> None:
        async with serving(management=True) as (server, _):
            port = server.management_port
            assert port is not None
            answers = {path: await http_get(port, path) for path in ("/healthz", "/readyz", "/x")}
        assert answers["/healthz"][0] == 200
        assert json.loads(answers["/readyz"][1])["status"] == "ready"
        assert answers["/x"][0] == 404


class TestAnswers:
    """The management server on its own, around a readiness the test controls."""

    @async_test
    async def test_readyz_is_503_until_ready_and_carries_the_sources_details(self) -> None:
        ready = [False]
        probe = await start_management(
            "127.0.0.1", 0, lambda: ready[0], details=lambda: {"source": "redis", "stale": True}
        )
        try:
            status, body = await http_get(probe.port, "/readyz?verbose=1")
            assert status == 503
            assert json.loads(body) == {
                "status": "not ready",
                "pid": os.getpid(),
                "source": "redis",
                "stale": True,
            }
            ready[0] = True
            status, body = await http_get(probe.port, "/readyz")
            assert (status, json.loads(body)["status"]) == (200, "ready")
            status, body = await http_get(probe.port, "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok", "pid": os.getpid()})
        finally:
            await probe.close()

    @async_test
    async def test_only_get_and_head_are_served_and_a_broken_request_is_400(self) -> None:
        probe = await start_management("127.0.0.1", 0, lambda: True)
        try:
            assert (await http_get(probe.port, "/healthz", "POST"))[0] == 405
            assert (await http_get(probe.port, "/healthz", "HEAD"))[0] == 200
            # A request cut short is never answered as if whole (aiohttp closes it unanswered);
            # a request line that is not HTTP is 400.
            assert (await http_send(probe.port, b"GET /healthz HTTP/1.1\r\nHost"))[0] in (0, 400)
            assert (await http_send(probe.port, b"nonsense\r\n\r\n"))[0] == 400
            # Without a metrics source, /metrics is not there.
            assert (await http_get(probe.port, "/metrics"))[0] == 404
        finally:
            await probe.close()

    @async_test
    async def test_metrics_are_served_in_prometheus_text_format(self) -> None:
        probe = await start_management(
            "127.0.0.1", 0, lambda: True, metrics=lambda: b"flagedge_up 1\n"
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", probe.port)
            # HTTP/1.1 requires Host (aiohttp answers 400 without it; every scraper sends it).
            writer.write(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
        finally:
            await probe.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Type: text/plain; version=0.0.4" in head
        assert body == b"flagedge_up 1\n"
