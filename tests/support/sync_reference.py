"""The reference in-process evaluator (openfeature-flagd-core, which the Python in-process
provider runs) as the oracle for the sync service: feed it the flagd JSON flagedge sends,
ask it what the edge is asked, and compare the two answers as plain dicts.

``v2_bucketing`` swaps the reference's fractional (v3, CBOR) for flagd 0.15-0.16's v2
bucketing, so that a v2 snapshot can be checked the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Iterator
from typing import Any

import mmh3
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, GeneralError, ParseError, TypeMismatchError

from flagedge.model import FlagType
from flagedge.snapshot import Snapshot
from tests.support.golden import load_cases

ERRORS = (
    (FlagNotFoundError, "FLAG_NOT_FOUND"),
    (ParseError, "PARSE_ERROR"),
    (TypeMismatchError, "TYPE_MISMATCH"),
    (GeneralError, "GENERAL"),
)


class _NoValue:
    """The caller's default: an answer carrying it has no value."""


def infer_type(doc: dict[str, Any], key: str) -> str:
    """The type a caller would ask for: the variants' kind (integers when every one is)."""
    flag = doc.get("flags", {}).get(key)
    if not isinstance(flag, dict) or not flag.get("variants"):
        return "string"
    values = list(flag["variants"].values())
    first = values[0]
    if isinstance(first, bool):
        return "boolean"
    if isinstance(first, str):
        return "string"
    if isinstance(first, int | float):
        if all(isinstance(x, int) and not isinstance(x, bool) for x in values):
            return "integer"
        return "float"
    return "object"


def reference_answer(core: FlagdCore, key: str, context: dict[str, Any], kind: str) -> dict:
    attributes = dict(context)
    targeting_key = attributes.pop("targetingKey", None)
    ctx = EvaluationContext(targeting_key=targeting_key, attributes=attributes)
    method = {
        "boolean": core.resolve_boolean_value,
        "string": core.resolve_string_value,
        "integer": core.resolve_integer_value,
        "float": core.resolve_float_value,
        "object": core.resolve_object_value,
    }[kind]
    sentinel = _NoValue()
    try:
        details = method(key, sentinel, ctx)  # type: ignore[arg-type]
    except Exception as exc:
        for exc_type, code in ERRORS:
            if isinstance(exc, exc_type):
                return {"value": None, "variant": None, "reason": "ERROR", "errorCode": code}
        raise
    reason = getattr(details.reason, "value", details.reason)
    return {
        "value": None if details.value is sentinel else details.value,
        "variant": details.variant,
        "reason": str(reason),
        "errorCode": None,
        "metadata": dict(details.flag_metadata or {}),
    }


def edge_answer(snap: Snapshot, key: str, context: dict[str, Any], kind: str, now: int) -> dict:
    r = snap.evaluate(key, dict(context), now, FlagType(kind))
    if r.error_code is not None:
        return {"value": None, "variant": None, "reason": "ERROR", "errorCode": str(r.error_code)}
    return {
        "value": r.value,
        "variant": r.variant,
        "reason": str(r.reason),
        "errorCode": None,
        "metadata": dict(r.metadata),
    }


def golden_groups() -> list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    """(file stem, scheme, document, cases) for every golden case the reference agrees with
    flagd on ("reference": "agree"), and every v2 case (the reference then buckets with v2:
    ``v2_bucketing``), grouped so that each document is served once per scheme."""
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for stem, case, doc in load_cases():
        scheme = case.get("fractional", "v3")
        if case.get("reference", "agree") != "agree" and scheme != "v2":
            continue
        groups.setdefault((stem, scheme), (doc, []))[1].append(case)
    return [(stem, scheme, doc, cases) for (stem, scheme), (doc, cases) in groups.items()]


def case_now(case: dict[str, Any]) -> int:
    # The reference reads the clock itself; the cases it agrees on do not depend on it.
    return int(case.get("now") or time.time())


def fractional_v2(data: dict, *args: Any) -> Any:
    """flagd 0.15-0.16's fractional: murmur3 of the bucketing string, implicit key
    flagKey + targetingKey (docs/flagd-compat.md section 4.4)."""
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


@contextlib.contextmanager
def v2_bucketing() -> Iterator[None]:
    """The reference evaluator with flagd 0.15-0.16's bucketing, for the duration."""
    module = importlib.import_module("openfeature.contrib.tools.flagd.core.targeting.targeting")
    saved = module.OPERATORS["fractional"]
    module.OPERATORS["fractional"] = fractional_v2
    try:
        yield
    finally:
        module.OPERATORS["fractional"] = saved
