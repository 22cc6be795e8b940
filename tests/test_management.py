"""The management HTTP port (flagedge.server.management): /healthz, /readyz and /metrics
for probes and scrapers, one GET and one answer, on a real port."""

from __future__ import annotations

import asyncio
import json

from tests.support.server import async_test, serving


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


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
