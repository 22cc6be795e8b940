"""OFREP over real HTTP (open-feature/protocol service/openapi.yaml 0.3.0): the single-flag
and bulk endpoints, ETags and 304, change events over SSE, tokens, rates."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from flagedge.model import Override, OverrideKind
from flagedge.serve.config import SecurityConfig
from flagedge.serve.security import Security
from flagedge.server.ofrep import etag_matches
from flagedge.server.web import start_http
from flagedge.snapshot import SnapshotHolder
from tests.support.documents import DOCUMENT, build
from tests.support.http import auth_file, http_serving, security_for
from tests.support.server import async_test
from tests.support.tls import certificates

FLAG = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"


class TestOneFlag:
    @async_test
    async def test_a_static_flag_answers_key_value_reason_variant_and_metadata(self) -> None:
        async with http_serving() as served:
            status, body, _ = await served.post(FLAG + "static-bool", {"context": {}})
        assert status == 200
        assert body == {
            "key": "static-bool",
            "value": True,
            "reason": "STATIC",
            "variant": "on",
            "metadata": {"flagSetId": "shop", "version": "7", "owner": "checkout"},
        }

    @async_test
    async def test_targeting_reads_the_context(self) -> None:
        async with http_serving() as served:
            context = {"targetingKey": "u1", "email": "a@example.com"}
            _, hit, _ = await served.post(FLAG + "targeted-string", {"context": context})
            _, miss, _ = await served.post(FLAG + "targeted-string", {"context": {"email": "x"}})
        assert hit is not None and (hit["value"], hit["reason"]) == ("#00f", "TARGETING_MATCH")
        assert miss is not None and (miss["value"], miss["reason"]) == ("#f00", "DEFAULT")

    @async_test
    async def test_a_code_default_has_no_value_and_a_null_variant(self) -> None:
        async with http_serving() as served:
            _, no_default, _ = await served.post(FLAG + "no-default", {"context": {}})
            _, disabled, _ = await served.post(FLAG + "disabled-flag", {})
        assert no_default == {"key": "no-default", "reason": "DEFAULT", "variant": None} | {
            "metadata": {"flagSetId": "shop", "version": "7"}
        }
        assert disabled is not None and "value" not in disabled
        assert (disabled["reason"], disabled["variant"]) == ("DISABLED", None)

    @async_test
    async def test_an_unknown_flag_is_404_flag_not_found_with_a_sentence(self) -> None:
        async with http_serving() as served:
            status, body, _ = await served.post(FLAG + "nope", {"context": {}})
        assert status == 404 and body is not None
        assert (body["key"], body["errorCode"]) == ("nope", "FLAG_NOT_FOUND")
        assert "nope" in body["errorDetails"] and "Traceback" not in body["errorDetails"]

    @async_test
    async def test_a_broken_rule_is_400_parse_error_and_a_bad_variant_400_general(self) -> None:
        async with http_serving() as served:
            bad_rule, parse, _ = await served.post(FLAG + "bad-rule", {"context": {}})
            bad_variant, general, _ = await served.post(FLAG + "unknown-variant", {})
        assert bad_rule == 400 and parse is not None and parse["errorCode"] == "PARSE_ERROR"
        assert bad_variant == 400 and general is not None and general["errorCode"] == "GENERAL"
        assert parse["errorDetails"] and general["errorDetails"]

    @async_test
    async def test_a_context_that_is_not_an_object_is_400_invalid_context(self) -> None:
        async with http_serving() as served:
            status, body, _ = await served.post(FLAG + "static-bool", {"context": [1, 2]})
        assert status == 400 and body is not None
        assert body["errorCode"] == "INVALID_CONTEXT" and "array" in body["errorDetails"]

    @async_test
    async def test_a_targeting_key_that_is_not_a_string_is_evaluated_as_flagd_does(
        self,
    ) -> None:
        async with http_serving() as served:
            status, body, _ = await served.post(
                FLAG + "static-bool", {"context": {"targetingKey": 42}}
            )
        assert status == 200 and body is not None and body["value"] is True

    @async_test
    async def test_malformed_json_is_400_parse_error(self) -> None:
        async with http_serving() as served:
            status, body, _ = await served.post(FLAG + "static-bool", raw=b'{"context": {')
        assert status == 400 and body is not None and body["errorCode"] == "PARSE_ERROR"

    @async_test
    async def test_a_kill_switch_is_answered_at_once(self) -> None:
        holder = SnapshotHolder(build())
        async with http_serving(holder) as served:
            _, before, _ = await served.post(FLAG + "static-bool", {})
            current = holder.current
            assert current is not None
            holder.install(
                current.with_overrides({"static-bool": Override(OverrideKind.KILL, "off")}, 2)
            )
            _, after, _ = await served.post(FLAG + "static-bool", {})
        assert before is not None and after is not None
        assert (before["value"], after["value"], after["reason"]) == (True, False, "DISABLED")


class TestBulk:
    @async_test
    async def test_every_flag_comes_back_with_flag_set_metadata_an_etag_and_a_stream(
        self,
    ) -> None:
        async with http_serving() as served:
            status, body, headers = await served.post(BULK, {"context": {"targetingKey": "u"}})
        assert status == 200 and body is not None
        by_key = {f["key"]: f for f in body["flags"]}
        assert set(by_key) == set(DOCUMENT["flags"])
        assert by_key["static-bool"]["value"] is True
        assert by_key["bad-rule"]["errorCode"] == "PARSE_ERROR"
        assert "value" not in by_key["no-default"] and by_key["no-default"]["variant"] is None
        assert body["metadata"] == {"flagSetId": "shop", "version": "7"}
        (stream,) = body["eventStreams"]
        assert stream["type"] == "sse" and stream["url"].endswith("/ofrep/v1/events")
        assert headers["ETag"].startswith('"') and headers["ETag"].endswith('"')

    @async_test
    async def test_the_same_etag_answers_304_with_no_body(self) -> None:
        async with http_serving() as served:
            request = {"context": {"targetingKey": "u"}}
            _, _, first = await served.post(BULK, request)
            status, body, second = await served.post(BULK, request, If_None_Match=first["ETag"])
            weak, _, _ = await served.post(BULK, request, If_None_Match=f"W/{first['ETag']}")
        assert (status, body, second["ETag"]) == (304, None, first["ETag"])
        assert weak == 304

    @async_test
    async def test_the_etag_differs_by_context_and_changes_with_the_flags(self) -> None:
        holder = SnapshotHolder(build())
        async with http_serving(holder) as served:
            _, _, one = await served.post(BULK, {"context": {"targetingKey": "a"}})
            _, _, other = await served.post(BULK, {"context": {"targetingKey": "b"}})
            current = holder.current
            assert current is not None
            holder.install(current.with_overrides({"static-bool": Override(OverrideKind.KILL)}, 2))
            status, body, changed = await served.post(
                BULK, {"context": {"targetingKey": "a"}}, If_None_Match=one["ETag"]
            )
        assert one["ETag"] != other["ETag"]
        assert status == 200 and changed["ETag"] != one["ETag"]
        assert body is not None
        killed = next(f for f in body["flags"] if f["key"] == "static-bool")
        assert killed["reason"] == "DISABLED"

    @async_test
    async def test_an_unchanged_reload_keeps_the_etag(self) -> None:
        holder = SnapshotHolder(build())
        async with http_serving(holder) as served:
            _, _, first = await served.post(BULK, {"context": {}})
            holder.install(build(version=2))  # same definitions, a new version
            status, _, _ = await served.post(BULK, {"context": {}}, If_None_Match=first["ETag"])
        assert status == 304

    @async_test
    async def test_a_rule_reading_the_clock_ties_the_etag_to_the_second(self) -> None:
        document: dict[str, Any] = {
            "flags": {
                "late": {
                    "state": "ENABLED",
                    "variants": {"yes": True, "no": False},
                    "defaultVariant": "no",
                    "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "yes", "no"]},
                }
            }
        }
        now = [100]
        holder = SnapshotHolder(build(document))
        async with http_serving(holder) as served:
            served.running.ofrep.clock = lambda: now[0]
            _, _, first = await served.post(BULK, {})
            same, _, _ = await served.post(BULK, {}, If_None_Match=first["ETag"])
            now[0] = 101
            later, _, _ = await served.post(BULK, {}, If_None_Match=first["ETag"])
        assert (same, later) == (304, 200)

    def test_if_none_match_takes_lists_and_weak_tags(self) -> None:
        assert etag_matches('"a", W/"b"', '"b"') and etag_matches('"a"', '"a"')
        assert not etag_matches('"a"', '"b"') and not etag_matches("*", '"b"')


async def _events(session: aiohttp.ClientSession, url: str, **headers: str) -> Any:
    return await session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=30))


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next SSE event's fields (comments and keep-alives skipped)."""
    fields: dict[str, Any] = {}
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if not line:
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.strip()


class TestEvents:
    @async_test
    async def test_a_change_sends_refetch_evaluation_with_the_new_etag(self) -> None:
        holder = SnapshotHolder(build())
        async with http_serving(holder) as served:
            response = await _events(served.session, served.base + "/ofrep/v1/events")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            await response.content.readline()  # the opening comment: subscribed
            current = holder.current
            assert current is not None
            holder.install(current.with_overrides({"static-bool": Override(OverrideKind.KILL)}, 2))
            event = await asyncio.wait_for(_next_event(response), 10)
            response.close()
        assert event["event"] == "message"
        assert event["data"]["type"] == "refetchEvaluation"
        assert event["data"]["etag"] == event["id"] and isinstance(
            event["data"]["lastModified"], int
        )

    @async_test
    async def test_a_change_to_a_flag_a_token_cannot_see_is_not_announced(
        self, tmp_path: Path
    ) -> None:
        tokens = auth_file(tmp_path)
        holder = SnapshotHolder(build())
        async with http_serving(holder, security=security_for(tokens)) as served:
            response = await _events(
                served.session,
                served.base + "/ofrep/v1/events",
                Authorization=f"Bearer {tokens.static_only}",
            )
            await response.content.readline()
            current = holder.current
            assert current is not None
            hidden = current.with_overrides({"float-flag": Override(OverrideKind.KILL)}, 2)
            holder.install(hidden)
            seen = hidden.with_overrides({"static-bool": Override(OverrideKind.KILL)}, 3)
            holder.install(seen)
            event = await asyncio.wait_for(_next_event(response), 10)
            response.close()
            _, bulk, _ = await served.post(BULK, {}, Authorization=f"Bearer {tokens.static_only}")
        # The first event is for version 3: the hidden change (version 2) said nothing.
        assert event["data"]["etag"] == served.running.ofrep.configuration_of(seen).etag
        assert bulk is not None and [f["key"] for f in bulk["flags"]] == ["static-bool"]

    @async_test
    async def test_streams_end_when_the_server_stops(self) -> None:
        async with http_serving() as served:
            response = await _events(served.session, served.base + "/ofrep/v1/events")
            await response.content.readline()
            await served.running.stop()
            rest = await asyncio.wait_for(response.content.read(), 10)
        assert b"refetch" not in rest


class TestCallers:
    @async_test
    async def test_without_a_token_401_with_an_unknown_one_401_without_the_scope_403(
        self, tmp_path: Path
    ) -> None:
        tokens = auth_file(tmp_path)
        async with http_serving(security=security_for(tokens)) as served:
            none, _, challenge = await served.post(FLAG + "static-bool", {})
            unknown, _, _ = await served.post(FLAG + "static-bool", {}, Authorization="Bearer x")
            scope, _, _ = await served.post(
                FLAG + "static-bool", {}, Authorization=f"Bearer {tokens.sync_only}"
            )
            ok, body, _ = await served.post(FLAG + "static-bool", {}, X_API_Key=tokens.everything)
        assert (none, unknown, scope, ok) == (401, 401, 403, 200)
        assert challenge["WWW-Authenticate"] == "Bearer"
        assert body is not None and body["value"] is True

    @async_test
    async def test_a_flag_outside_a_tokens_prefixes_is_404_as_if_absent(
        self, tmp_path: Path
    ) -> None:
        tokens = auth_file(tmp_path)
        async with http_serving(security=security_for(tokens)) as served:
            auth = f"Bearer {tokens.static_only}"
            hidden, body, _ = await served.post(FLAG + "float-flag", {}, Authorization=auth)
            absent, other, _ = await served.post(FLAG + "no-such", {}, Authorization=auth)
            seen, _, _ = await served.post(FLAG + "static-bool", {}, Authorization=auth)
        assert (hidden, absent, seen) == (404, 404, 200)
        assert body is not None and other is not None
        assert body["errorCode"] == other["errorCode"] == "FLAG_NOT_FOUND"

    @async_test
    async def test_callers_who_see_different_flags_get_different_etags(
        self, tmp_path: Path
    ) -> None:
        tokens = auth_file(tmp_path)
        async with http_serving(security=security_for(tokens)) as served:
            _, every, all_flags = await served.post(
                BULK, {}, Authorization=f"Bearer {tokens.everything}"
            )
            status, _, _ = await served.post(
                BULK,
                {},
                Authorization=f"Bearer {tokens.static_only}",
                If_None_Match=all_flags["ETag"],
            )
        assert every is not None and len(every["flags"]) == len(DOCUMENT["flags"])
        assert status == 200  # another caller's ETag never answers 304

    @async_test
    async def test_over_the_rate_a_token_gets_429_with_retry_after(self) -> None:
        async with http_serving(rate=0.5, burst=2) as served:
            answers = [await served.post(FLAG + "static-bool", {}) for _ in range(3)]
            events = await served.session.get(served.base + "/ofrep/v1/events")
            events.close()
        assert [a[0] for a in answers] == [200, 200, 429]
        assert int(answers[2][2]["Retry-After"]) >= 1
        assert events.status == 429


@async_test
async def test_with_a_certificate_the_port_speaks_https_only(tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path / "certs")
    security = Security(SecurityConfig(server_cert_path=str(cert), server_key_path=str(key)))
    running = await start_http(
        SnapshotHolder(build()), ssl_context=security.ssl_context(), grace=0.5
    )
    trusted = ssl.create_default_context(cafile=str(ca))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"https://127.0.0.1:{running.port}{FLAG}static-bool", json={}, ssl=trusted
            ) as answer:
                body = await answer.json()
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"http://127.0.0.1:{running.port}{FLAG}static-bool"):
                    pass
    finally:
        await running.stop()
    assert body["value"] is True
