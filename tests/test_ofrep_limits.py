"""Bad input on the OFREP/Connect port gets a clear status (or a bounded wait) and loses
nothing: the listener keeps answering everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import json

from flagedge.server.http import HttpLimits
from tests.support.http import Served, http_serving, post_bytes, raw_request
from tests.support.server import async_test

FLAG = "/ofrep/v1/evaluate/flags/static-bool"


async def still_answers(served: Served) -> None:
    status, body, _ = await served.post(FLAG, {"context": {}})
    assert status == 200 and body is not None and body["value"] is True


@async_test
async def test_a_body_over_the_limit_is_413_before_it_is_read() -> None:
    async with http_serving(http=HttpLimits(max_body_bytes=64 * 1024)) as served:
        port = served.running.port
        huge = b'{"context": {"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = post_bytes(FLAG, b"")[: -len("\r\n\r\n")].replace(
            b"Content-Length: 0", f"Content-Length: {len(huge)}".encode()
        )
        writer.write(head + b"\r\n\r\n" + huge[:1024])  # the rest never needs to be sent
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert b" 413 " in status_line
        await still_answers(served)


@async_test
async def test_a_chunked_body_over_the_limit_is_413() -> None:
    async with http_serving(http=HttpLimits(max_body_bytes=1024)) as served:
        chunk = b'{"context": {"pad": "' + b"y" * 4096 + b'"}}'
        request = (
            (
                f"POST {FLAG} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n0\r\n\r\n"
        )
        status, body = await raw_request(served.running.port, request)
        assert status == 413 and b"limit" in body
        await still_answers(served)


@async_test
async def test_a_body_trickled_byte_by_byte_times_out_with_408_and_others_are_served() -> None:
    async with http_serving(http=HttpLimits(body_timeout=0.5)) as served:
        body = b'{"context": {"targetingKey": "slow"}}'
        reader, writer = await asyncio.open_connection("127.0.0.1", served.running.port)
        writer.write(post_bytes(FLAG, body)[: -len(body)])
        await writer.drain()

        async def trickle() -> None:
            for byte in body:
                writer.write(bytes((byte,)))
                await writer.drain()
                await asyncio.sleep(0.1)

        slow = asyncio.ensure_future(trickle())
        await still_answers(served)  # while the slow client is still sending
        status_line = await asyncio.wait_for(reader.readline(), 10)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await slow
        writer.close()
        assert b" 408 " in status_line
        await still_answers(served)


@async_test
async def test_invalid_utf8_and_deep_nesting_are_400_and_name_the_problem() -> None:
    async with http_serving() as served:
        port = served.running.port
        bad_utf8 = await raw_request(port, post_bytes(FLAG, b'{"context": {"n": "\xff\xfe"}}'))
        deep_context = {"context": json.loads('{"a":' * 40 + "1" + "}" * 40)}
        deep = await raw_request(port, post_bytes(FLAG, json.dumps(deep_context).encode()))
        deeper = await raw_request(
            port, post_bytes(FLAG, b'{"context": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}")
        )
        await still_answers(served)
    assert bad_utf8[0] == 400 and json.loads(bad_utf8[1])["errorCode"] == "PARSE_ERROR"
    assert deep[0] == 400 and json.loads(deep[1])["errorCode"] == "INVALID_CONTEXT"
    assert "deeper" in json.loads(deep[1])["errorDetails"]
    assert deeper[0] == 400 and json.loads(deeper[1])["errorCode"] in (
        "PARSE_ERROR",
        "INVALID_CONTEXT",
    )


@async_test
async def test_a_body_that_is_not_an_object_is_400_parse_error() -> None:
    async with http_serving() as served:
        status, body, _ = await served.post(FLAG, raw=b"[1, 2, 3]")
        empty, answer, _ = await served.post(FLAG, raw=b"")
    assert status == 400 and body is not None and body["errorCode"] == "PARSE_ERROR"
    assert empty == 200 and answer is not None and answer["value"] is True


@async_test
async def test_unknown_paths_are_404_and_wrong_methods_405_with_allow() -> None:
    async with http_serving() as served:
        session, base = served.session, served.base
        async with session.get(base + "/nowhere") as nowhere:
            nowhere_status = nowhere.status
        async with session.get(base + FLAG) as wrong:
            wrong_status, allow = wrong.status, wrong.headers.get("Allow")
        async with session.delete(base + "/ofrep/v1/evaluate/flags") as bulk:
            bulk_status = bulk.status
        garbage = await raw_request(served.running.port, b"NOT HTTP AT ALL\r\n\r\n")
        await still_answers(served)
    assert (nowhere_status, wrong_status, bulk_status) == (404, 405, 405)
    assert allow == "POST"
    assert garbage[0] == 400


@async_test
async def test_event_streams_are_capped_and_the_next_one_is_told_to_come_back() -> None:
    cap = 50
    async with http_serving(http=HttpLimits(max_streams=cap)) as served:
        url = served.base + "/ofrep/v1/events"
        streams = [await served.session.get(url) for _ in range(cap)]
        for stream in streams:
            assert stream.status == 200
            await stream.content.readline()
        refused = await served.session.get(url)
        assert served.running.ofrep.streams == cap
        await still_answers(served)
        for stream in streams:
            stream.close()
    assert refused.status == 503 and int(refused.headers["Retry-After"]) > 0
