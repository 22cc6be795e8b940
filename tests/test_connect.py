"""flagd's evaluation services over Connect JSON on the HTTP port: the protobuf JSON mapping
of the same messages, flagd's result table, and Connect's error JSON and HTTP codes."""

from __future__ import annotations

from pathlib import Path

from tests.support.http import auth_file, http_serving, post_bytes, raw_request, security_for
from tests.support.server import async_test

V1 = "/flagd.evaluation.v1.Service/"
V2 = "/flagd.evaluation.v2.Service/"
SHOP = {"flagSetId": "shop", "version": "7"}


@async_test
async def test_v2_resolve_boolean_answers_the_json_mapping_of_the_response() -> None:
    async with http_serving() as served:
        status, body, headers = await served.post(
            V2 + "ResolveBoolean", {"flagKey": "static-bool", "context": {"targetingKey": "u"}}
        )
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == {
        "value": True,
        "reason": "STATIC",
        "variant": "on",
        "metadata": {**SHOP, "owner": "checkout"},
    }


@async_test
async def test_every_type_resolves_and_int64_travels_as_a_string() -> None:
    async with http_serving() as served:
        string = await served.post(
            V2 + "ResolveString",
            {"flagKey": "targeted-string", "context": {"email": "a@example.com"}},
        )
        integer = await served.post(V1 + "ResolveInt", {"flagKey": "int-flag"})
        number = await served.post(V1 + "ResolveFloat", {"flagKey": "float-flag"})
        obj = await served.post(V2 + "ResolveObject", {"flagKey": "object-flag"})
    assert string[1] is not None and (string[1]["value"], string[1]["reason"]) == (
        "#00f",
        "TARGETING_MATCH",
    )
    assert integer[1] is not None and integer[1]["value"] == "1"
    assert number[1] is not None and number[1]["value"] == 0.5
    assert obj[1] is not None and obj[1]["value"] == {"size": 3, "name": "A"}


@async_test
async def test_v2_leaves_out_the_value_of_a_code_default_where_v1_says_not_found() -> None:
    async with http_serving() as served:
        v2 = await served.post(V2 + "ResolveString", {"flagKey": "no-default"})
        v1 = await served.post(V1 + "ResolveString", {"flagKey": "no-default"})
    assert v2[0] == 200 and v2[1] is not None
    assert "value" not in v2[1] and v2[1]["reason"] == "DEFAULT"
    assert v1[0] == 404 and v1[1] == {"code": "not_found", "message": "Flag not found"}


@async_test
async def test_flagd_errors_become_connect_codes_and_http_statuses() -> None:
    async with http_serving() as served:
        missing = await served.post(V2 + "ResolveBoolean", {"flagKey": "nope"})
        mismatch = await served.post(V2 + "ResolveString", {"flagKey": "static-bool"})
        parse = await served.post(V2 + "ResolveBoolean", {"flagKey": "bad-rule"})
        general = await served.post(V2 + "ResolveBoolean", {"flagKey": "unknown-variant"})
    assert (missing[0], missing[1]) == (404, {"code": "not_found", "message": "Flag not found"})
    assert (mismatch[0], mismatch[1]) == (
        400,
        {"code": "invalid_argument", "message": "Type mismatch error"},
    )
    assert parse[0] == 500 and parse[1] is not None and parse[1]["code"] == "data_loss"
    assert general[0] == 500 and general[1] == {"code": "unknown", "message": "General error"}


@async_test
async def test_v1_resolve_all_lists_every_flag_but_the_code_defaults() -> None:
    async with http_serving() as served:
        status, body, _ = await served.post(V1 + "ResolveAll", {"context": {}})
        v2_status, v2_body, _ = await served.post(V2 + "ResolveAll", {"context": {}})
    assert status == 200 and body is not None
    flags = body["flags"]
    assert flags["static-bool"]["boolValue"] is True
    assert flags["float-flag"]["doubleValue"] == 0.5
    assert "no-default" not in flags and "null-default" not in flags
    assert v2_status == 404 and v2_body is not None and v2_body["code"] == "unimplemented"


@async_test
async def test_the_flagd_selector_header_selects_as_on_grpc() -> None:
    async with http_serving() as served:
        other = await served.post(
            V2 + "ResolveBoolean", {"flagKey": "other-set"}, Flagd_Selector="flagSetId=other"
        )
        shop = await served.post(
            V2 + "ResolveBoolean", {"flagKey": "static-bool"}, Flagd_Selector="flagSetId=other"
        )
        bad = await served.post(
            V2 + "ResolveBoolean", {"flagKey": "static-bool"}, Flagd_Selector="nonsense=1"
        )
    assert other[0] == 200 and other[1] is not None and other[1]["metadata"]["flagSetId"] == "other"
    assert shop[0] == 404
    assert bad[0] == 400 and bad[1] is not None and bad[1]["code"] == "invalid_argument"


@async_test
async def test_a_body_that_is_not_the_request_message_is_invalid_argument() -> None:
    async with http_serving() as served:
        garbled = await served.post(V2 + "ResolveBoolean", raw=b"{not json")
        wrong = await served.post(V2 + "ResolveBoolean", {"flagKey": 7, "context": []})
        unknown_field = await served.post(
            V2 + "ResolveBoolean", {"flagKey": "static-bool", "extra": 1}
        )
        port = served.running.port
        media = await raw_request(
            port, post_bytes(V2 + "ResolveBoolean", b"\x0a\x01x", "application/proto")
        )
        unknown = await served.post(V2 + "Nope", {})
    assert garbled[0] == 400 and garbled[1] is not None
    assert garbled[1]["code"] == "invalid_argument"
    assert wrong[0] == 400
    assert unknown_field[0] == 200  # Connect's JSON codec ignores unknown fields
    assert media[0] == 415
    assert unknown[0] == 404 and unknown[1] is not None and unknown[1]["code"] == "unimplemented"


@async_test
async def test_tokens_apply_to_connect_calls_as_to_ofrep(tmp_path: Path) -> None:
    tokens = auth_file(tmp_path)
    async with http_serving(security=security_for(tokens)) as served:
        anonymous = await served.post(V2 + "ResolveBoolean", {"flagKey": "static-bool"})
        hidden = await served.post(
            V2 + "ResolveBoolean",
            {"flagKey": "float-flag"},
            Authorization=f"Bearer {tokens.static_only}",
        )
        every = await served.post(
            V1 + "ResolveAll", {}, Authorization=f"Bearer {tokens.static_only}"
        )
    assert anonymous[0] == 401 and anonymous[1] == {"code": "unauthenticated"}
    assert hidden[0] == 404
    assert every[1] is not None and list(every[1]["flags"]) == ["static-bool"]
