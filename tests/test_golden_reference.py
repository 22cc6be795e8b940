"""Check the golden cases against the reference evaluator (openfeature-flagd-core).

Only cases marked "reference": "agree" that use the v3 fractional scheme (the
default) are checked here: the reference implements v3 bucketing only, and
cases marked "skip: ..." document places where flagd and the reference differ.
The golden expectations themselves describe flagd 0.16 (evaluation.v2).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from golden_cases import case_id, load_cases, load_hash_vectors
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import (
    FlagNotFoundError,
    GeneralError,
    ParseError,
    TypeMismatchError,
)

_ALL = load_cases()
_ERRORS = (
    (FlagNotFoundError, "FLAG_NOT_FOUND"),
    (ParseError, "PARSE_ERROR"),
    (TypeMismatchError, "TYPE_MISMATCH"),
    (GeneralError, "GENERAL"),
)


class _NoValue:
    """Sentinel default: a result carrying it means "no value" (code default)."""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "<no value>"


def _infer_type(doc: dict[str, Any], key: str) -> str:
    flag = doc.get("flags", {}).get(key)
    if not isinstance(flag, dict) or not flag.get("variants"):
        return "string"
    values = list(flag["variants"].values())
    first = values[0]
    if isinstance(first, bool):
        return "boolean"
    if isinstance(first, str):
        return "string"
    if isinstance(first, (int, float)):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in values):
            return "integer"
        return "float"
    return "object"


def _params() -> list[Any]:
    params = []
    for index, (stem, case, doc) in enumerate(_ALL):
        marks = []
        ref = case.get("reference", "agree")
        if ref != "agree":
            marks.append(pytest.mark.skip(reason=f"reference differs from flagd: {ref}"))
        elif case.get("fractional", "v3") != "v3":
            marks.append(
                pytest.mark.skip(reason="reference evaluator implements fractional v3 only")
            )
        params.append(pytest.param(stem, case, doc, id=case_id(stem, case, index), marks=marks))
    return params


def _resolve(doc: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    core = FlagdCore()
    # FlagdCore mutates the flag dictionaries it is given; hand it a copy.
    core.set_flags(copy.deepcopy(doc))
    ctx_data = dict(case.get("context") or {})
    targeting_key = ctx_data.pop("targetingKey", None)
    ctx = EvaluationContext(targeting_key=targeting_key, attributes=ctx_data)
    kind = case.get("type") or _infer_type(doc, case["flag"])
    method = {
        "boolean": core.resolve_boolean_value,
        "string": core.resolve_string_value,
        "integer": core.resolve_integer_value,
        "float": core.resolve_float_value,
        "object": core.resolve_object_value,
    }[kind]
    sentinel = _NoValue()
    try:
        details = method(case["flag"], sentinel, ctx)  # type: ignore[arg-type]
    except Exception as exc:
        for exc_type, code in _ERRORS:
            if isinstance(exc, exc_type):
                return {"value": None, "variant": None, "reason": "ERROR", "errorCode": code}
        raise
    value = None if details.value is sentinel else details.value
    reason = details.reason
    reason = getattr(reason, "value", reason)
    return {
        "value": value,
        "variant": details.variant,
        "reason": reason,
        "errorCode": None,
        "metadata": dict(details.flag_metadata or {}),
        "kind": kind,
    }


def _same(a: Any, b: Any) -> bool:
    """JSON equality that does not confuse booleans with numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("stem", "case", "doc"), _params())
def test_golden_case_matches_reference(stem: str, case: dict, doc: dict) -> None:
    expect = case["expect"]
    got = _resolve(doc, case)
    for field in ("reason", "errorCode", "variant"):
        assert got[field] == expect.get(field), (
            f"{case['name']}: {field} {got[field]!r} != {expect.get(field)!r}"
        )
    assert _same(got["value"], expect.get("value")), (
        f"{case['name']}: value {got['value']!r} != {expect.get('value')!r}"
    )
    if got.get("kind") == "float" and got["value"] is not None:
        assert isinstance(got["value"], float)
    if "metadata" in expect and got["errorCode"] is None:
        assert _same(got["metadata"], expect["metadata"]), (
            f"{case['name']}: metadata {got['metadata']!r}"
        )


def test_golden_cases_are_well_formed() -> None:
    assert len(_ALL) >= 150
    reasons = {"STATIC", "TARGETING_MATCH", "DEFAULT", "DISABLED", "ERROR"}
    codes = {None, "FLAG_NOT_FOUND", "PARSE_ERROR", "TYPE_MISMATCH", "GENERAL"}
    for stem, case, _doc in _ALL:
        assert case["name"] and case["flag"], stem
        exp = case["expect"]
        assert exp["reason"] in reasons, (stem, case["name"])
        assert exp.get("errorCode") in codes, (stem, case["name"])
        assert case.get("fractional", "v3") in ("v2", "v3"), (stem, case["name"])
        assert case.get("type") in (None, "boolean", "string", "integer", "float", "object")
        ref = case.get("reference")
        assert ref == "agree" or (isinstance(ref, str) and ref.startswith("skip: ")), (
            stem,
            case["name"],
        )
        if exp["reason"] in ("ERROR", "DISABLED"):
            assert exp["value"] is None and exp["variant"] is None, (stem, case["name"])
        if exp["reason"] == "ERROR":
            assert exp["errorCode"] is not None, (stem, case["name"])
        else:
            assert exp.get("errorCode") is None, (stem, case["name"])


def test_murmur3_hash_vectors() -> None:
    mmh3 = pytest.importorskip("mmh3")
    vectors = load_hash_vectors()
    assert vectors["murmur3_v2"]
    for vec in vectors["murmur3_v2"]:
        assert mmh3.hash(vec["input"].encode("utf-8"), signed=False) == vec["hash"], vec


def _fractional_v2(data: dict, *args: Any) -> Any:
    """flagd 0.15-0.16 bucketing: murmur3 of the bucketing string (test-only)."""
    import mmh3

    if not args:
        return None
    if isinstance(args[0], str):
        bucket_by, buckets = args[0], args[1:]
    else:
        tk = data.get("targetingKey")
        if not isinstance(tk, str) or not tk:
            return None
        bucket_by, buckets = data.get("$flagd", {}).get("flagKey", "") + tk, args
    total, parsed = 0, []
    for b in buckets:
        if not isinstance(b, list) or not 1 <= len(b) <= 2:
            return None
        w = b[1] if len(b) == 2 else 1
        if isinstance(w, bool) or not isinstance(w, int):
            return None
        parsed.append((b[0], max(0, w)))
        total += max(0, w)
    if total <= 0 or total > 2_147_483_647:
        return None
    bucket = (mmh3.hash(bucket_by.encode("utf-8"), signed=False) * total) >> 32
    acc = 0
    for variant, w in parsed:
        acc += w
        if bucket < acc:
            return variant
    return None


_V2 = [(s, c, d) for s, c, d in _ALL if c.get("fractional") == "v2"]


@pytest.mark.parametrize(
    ("stem", "case", "doc"),
    [pytest.param(s, c, d, id=case_id(s, c, i)) for i, (s, c, d) in enumerate(_V2)],
)
def test_v2_cases_against_reference_with_v2_bucketing(
    stem: str, case: dict, doc: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cross-check v2 cases: the reference evaluator with its fractional swapped for v2."""
    pytest.importorskip("mmh3")
    import importlib

    tmod = importlib.import_module("openfeature.contrib.tools.flagd.core.targeting.targeting")

    monkeypatch.setitem(tmod.OPERATORS, "fractional", _fractional_v2)
    expect = case["expect"]
    got = _resolve(doc, case)
    for field in ("reason", "errorCode", "variant"):
        assert got[field] == expect.get(field), f"{case['name']}: {field} {got[field]!r}"
    assert _same(got["value"], expect.get("value")), case["name"]
