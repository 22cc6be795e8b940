"""The reference evaluator, openfeature-flagd-core's ``FlagdCore``, answering in the shape
the tests compare flagedge's answers with:

    {"value", "variant", "reason", "errorCode", "metadata"}

The targeting key goes in as ``EvaluationContext.targeting_key``, the rest as attributes,
and a unique sentinel as the code default, so that "no value" is told apart from any value.

``v2_bucketing`` swaps the reference's fractional (v3, CBOR) for flagd 0.15-0.16's v2
bucketing, so that v2 cases and snapshots can be checked the same way.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator
from typing import Any

import mmh3
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import (
    FlagNotFoundError,
    GeneralError,
    ParseError,
    TypeMismatchError,
)

ERRORS = (
    (FlagNotFoundError, "FLAG_NOT_FOUND"),
    (ParseError, "PARSE_ERROR"),
    (TypeMismatchError, "TYPE_MISMATCH"),
    (GeneralError, "GENERAL"),
)


class NoValue:
    """Sentinel default: a result carrying it means "no value" (code default)."""

    def __repr__(self) -> str:  # pragma: no cover - shown in failure output only
        return "<no value>"


def infer_type(doc: dict[str, Any], key: str) -> str:
    """The type a client would ask for, from the flag's variants (string if none)."""
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


def resolve(
    doc: dict[str, Any],
    key: str,
    ctx: dict[str, Any],
    requested: str,
    *,
    any_error_is_general: bool,
) -> dict[str, Any]:
    """The reference's answer for ``doc``. An exception outside its four error types is
    GENERAL when ``any_error_is_general``, and raised otherwise."""
    core = FlagdCore()
    core.set_flags(copy.deepcopy(doc))  # FlagdCore mutates what it is given
    return answer(core, key, ctx, requested, any_error_is_general=any_error_is_general)


def answer(
    core: FlagdCore,
    key: str,
    ctx: dict[str, Any],
    requested: str,
    *,
    any_error_is_general: bool = False,
) -> dict[str, Any]:
    """The answer of ``core`` (flags already set), as ``resolve``."""
    attrs = copy.deepcopy(ctx)
    tk = attrs.pop("targetingKey", None)
    ec = EvaluationContext(targeting_key=tk, attributes=attrs)
    method = getattr(core, f"resolve_{requested}_value")
    sentinel = NoValue()
    try:
        details = method(key, sentinel, ec)
    except Exception as exc:
        code = next((c for t, c in ERRORS if isinstance(exc, t)), None)
        if code is None and not any_error_is_general:
            raise
        return {"value": None, "variant": None, "reason": "ERROR", "errorCode": code or "GENERAL"}
    reason = getattr(details.reason, "value", details.reason)
    return {
        "value": None if details.value is sentinel else details.value,
        "variant": details.variant,
        "reason": reason,
        "errorCode": None,
        "metadata": dict(details.flag_metadata or {}),
    }


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
