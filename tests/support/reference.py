"""The reference evaluator, openfeature-flagd-core's ``FlagdCore``, answering in the shape
the tests compare flagedge's answers with:

    {"value", "variant", "reason", "errorCode", "metadata"}

The targeting key goes in as ``EvaluationContext.targeting_key``, the rest as attributes,
and a unique sentinel as the code default, so that "no value" is told apart from any value.
"""

from __future__ import annotations

import copy
from typing import Any

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
    """The reference's answer. An exception outside its four error types is GENERAL when
    ``any_error_is_general``, and raised otherwise."""
    core = FlagdCore()
    core.set_flags(copy.deepcopy(doc))  # FlagdCore mutates what it is given
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
