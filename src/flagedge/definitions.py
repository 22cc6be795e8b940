"""Definitions: parse and validate a flagd document into FlagDefinitions. Pure.

    document (flagd JSON, as loaded)
        │  every structural problem, located by dotted JSON path (fatal: the document
        │  is refused); rule problems (unknown operator, $ref to nothing) are soft:
        │  they disable one flag, which then answers PARSE_ERROR
        ▼
    Document(flags: FlagDefinition..., metadata, scheme, problems)

Nothing here mutates the input: ``$ref`` substitution builds new containers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError, Problem
from .hashing import Scheme
from .model import FlagState, ToggleKind, ValueKind

MAX_RULE_DEPTH = 256  # JSON levels (an operator and its argument list are two)

OPERATORS = frozenset(
    {
        "var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==",
        ">", ">=", "<", "<=", "!", "!!", "or", "and", "%", "/", "*", "+", "-",
        "max", "min", "merge", "cat", "substr", "in", "map", "filter", "all",
        "none", "some", "reduce", "fractional", "sem_ver", "starts_with", "ends_with",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FlagDefinition:
    """One validated flag, as written (targeting with $refs already substituted)."""

    key: str
    state: FlagState
    kind: ValueKind
    variants: Mapping[str, Any]
    default_variant: str | None
    targeting: Any  # None when absent or {}
    metadata: Mapping[str, Any]  # flag-set metadata with the flag's on top
    raw: Mapping[str, Any]  # the flag's own JSON, for change detection and sync
    rule_problem: str | None  # why targeting compiles to PARSE_ERROR, if it does


@dataclass(frozen=True, slots=True)
class Document:
    """A validated definitions document."""

    flags: tuple[FlagDefinition, ...]
    metadata: Mapping[str, Any]
    scheme: Scheme
    problems: tuple[Problem, ...]  # non-fatal ones (each disables one flag)


def quote(value: Any) -> str:
    """A value as it would appear in JSON, for messages: "blue", 3, true."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _kind_of(value: Any) -> ValueKind | None:
    if isinstance(value, bool):
        return ValueKind.BOOLEAN
    if isinstance(value, str):
        return ValueKind.STRING
    if isinstance(value, int | float):
        return None if isinstance(value, float) and not math.isfinite(value) else ValueKind.NUMBER
    if isinstance(value, dict):
        return ValueKind.OBJECT
    return None


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number",
            dict: "an object", list: "an array"}.get(type(value), type(value).__name__)  # fmt: skip


def _check_metadata(meta: Any, path: str, problems: list[Problem]) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        problems.append(Problem(path, f"must be an object, not {_describe(meta)}"))
        return {}
    out: dict[str, Any] = {}
    for k, v in meta.items():
        p = f"{path}.{k}"
        if isinstance(v, bool | str) or (isinstance(v, int | float) and math.isfinite(v)):
            out[k] = v
        else:
            problems.append(Problem(p, f"must be a string, number or boolean, not {_describe(v)}"))
            continue
        if k in ("flagSetId", "version", "owner") and not isinstance(v, str):
            problems.append(Problem(p, f"must be a string, not {_describe(v)}"))
        elif k == "kind" and v not in set(ToggleKind):
            kinds = ", ".join(t.value for t in ToggleKind)
            problems.append(Problem(p, f"{quote(v)} is not a toggle kind ({kinds})"))
        elif k == "expires":
            try:
                _dt.date.fromisoformat(str(v)[:10]) if isinstance(v, str) else None
                if not isinstance(v, str):
                    raise ValueError
                if len(v) > 10:
                    _dt.datetime.fromisoformat(v)
            except ValueError:
                problems.append(Problem(p, f"{quote(v)} is not an ISO date (YYYY-MM-DD)"))
    return out


def _substitute_refs(node: Any, evaluators: Mapping[str, Any], missing: list[str]) -> Any:
    """Replace every ``{"$ref": name}`` with the named evaluator (never mutating input)."""
    if isinstance(node, dict):
        if len(node) == 1 and "$ref" in node and isinstance(node["$ref"], str):
            name = node["$ref"]
            if name in evaluators:
                return evaluators[name]  # nested $ref inside an evaluator stays unresolved
            missing.append(name)
            return node
        return {k: _substitute_refs(v, evaluators, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_refs(v, evaluators, missing) for v in node]
    return node


def _scan_rule(node: Any, limit: int, *, operators: bool = True) -> str | None:
    """One walk over a rule: the first reason it cannot compile (too deep; with
    ``operators``, an unknown operator or an unresolved ``$ref``), or None."""
    stack = [(node, 1)]
    while stack:
        n, depth = stack.pop()
        if depth > limit:
            return f"rule nested deeper than {limit} levels"
        if isinstance(n, dict):
            if operators and len(n) == 1:
                op, args = next(iter(n.items()))
                if op == "$ref":
                    return f"$ref to a missing evaluator {quote(args)}"
                if op not in OPERATORS:
                    return f"unknown operator {quote(op)}"
                stack.append((args, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in n.values())
        elif isinstance(n, list):
            stack.extend((v, depth + 1) for v in n)
    return None


def parse_document(doc: Any, *, scheme: Scheme | str = Scheme.V3) -> Document:
    """Validate a flagd definitions document; raise DefinitionError listing every problem.

    The bucketing scheme comes from ``metadata.fractional`` ("v2"/"v3") when the document
    sets it, else from ``scheme``.
    """
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise DefinitionError(
            [Problem("", f"the document must be an object, not {_describe(doc)}")]
        )
    set_meta = _check_metadata(doc.get("metadata"), "metadata", problems)
    chosen = set_meta.get("fractional", scheme)
    try:
        doc_scheme = Scheme(chosen)
    except ValueError:
        problems.append(Problem("metadata.fractional", f"{quote(chosen)} is not a scheme (v2, v3)"))
        doc_scheme = Scheme.V3

    evaluators = doc.get("$evaluators", {})
    if evaluators is None:
        evaluators = {}
    if not isinstance(evaluators, dict):
        problems.append(Problem("$evaluators", f"must be an object, not {_describe(evaluators)}"))
        evaluators = {}
    for name, body in evaluators.items():
        if body is None or body == {} or body == []:
            problems.append(Problem(f"$evaluators.{name}", "must not be empty"))

    raw_flags = doc.get("flags")
    entries: list[tuple[str, str, Any]] = []  # (path, key, flag)
    if raw_flags is None:
        problems.append(Problem("flags", "is required"))
    elif isinstance(raw_flags, dict):
        entries = [(f"flags.{k}", k, v) for k, v in raw_flags.items()]
    elif isinstance(raw_flags, list):  # flagd.json also allows an array of keyed flags
        for i, f in enumerate(raw_flags):
            if not isinstance(f, dict) or not isinstance(f.get("key"), str) or not f.get("key"):
                problems.append(Problem(f"flags[{i}].key", "is required and must be a string"))
            else:
                entries.append((f"flags[{i}]", f["key"], f))
    else:
        problems.append(Problem("flags", f"must be an object, not {_describe(raw_flags)}"))

    seen: set[str] = set()
    flags: list[FlagDefinition] = []
    soft: list[Problem] = []
    for path, key, raw in entries:
        if key in seen:
            problems.append(Problem(path, f"duplicate flag key {quote(key)}"))
            continue
        seen.add(key)
        if not key:
            problems.append(Problem(path, "flag key must not be empty"))
            continue
        flag = _parse_flag(path, key, raw, set_meta, evaluators, problems, soft)
        if flag is not None:
            flags.append(flag)

    if problems:
        raise DefinitionError(problems + soft)
    return Document(tuple(flags), set_meta, doc_scheme, tuple(soft))


def _parse_flag(
    path: str,
    key: str,
    raw: Any,
    set_meta: Mapping[str, Any],
    evaluators: Mapping[str, Any],
    problems: list[Problem],
    soft: list[Problem],
) -> FlagDefinition | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, f"a flag must be an object, not {_describe(raw)}"))
        return None
    before = len(problems)
    state = raw.get("state")
    if state is None:
        problems.append(Problem(f"{path}.state", "is required (ENABLED or DISABLED)"))
    elif state not in ("ENABLED", "DISABLED"):
        problems.append(Problem(f"{path}.state", f"{quote(state)} is not ENABLED or DISABLED"))

    variants = raw.get("variants")
    kind: ValueKind | None = None
    if variants is None:
        problems.append(Problem(f"{path}.variants", "is required"))
    elif not isinstance(variants, dict):
        problems.append(
            Problem(f"{path}.variants", f"must be an object, not {_describe(variants)}")
        )
    elif not variants:
        problems.append(Problem(f"{path}.variants", "must define at least one variant"))
    elif bad_names := [n for n in variants if not isinstance(n, str)]:
        problems.append(
            Problem(
                f"{path}.variants",
                f"variant names must be strings, not {quote(bad_names[0])} "
                "(YAML reads unquoted on/off/yes/no as booleans: quote them)",
            )
        )
    else:
        kinds: dict[ValueKind, str] = {}
        for name, value in variants.items():
            k = _kind_of(value)
            if k is None:
                problems.append(
                    Problem(
                        f"{path}.variants.{name}",
                        f"must be a boolean, string, number or object, not {_describe(value)}",
                    )
                )
            else:
                kinds.setdefault(k, name)
        if len(kinds) > 1:
            listed = ", ".join(f"{n} is {k.value}" for k, n in kinds.items())
            problems.append(
                Problem(f"{path}.variants", f"all variants must have one type ({listed})")
            )
        elif kinds:
            kind = next(iter(kinds))

    default = raw.get("defaultVariant")
    if default == "":
        default = None  # flagd's sync payloads write "" for "no default variant"
    if default is not None:
        if not isinstance(default, str):
            problems.append(
                Problem(
                    f"{path}.defaultVariant", f"must be a string or null, not {_describe(default)}"
                )
            )
        elif isinstance(variants, dict) and default not in variants:
            names = ", ".join(variants)
            problems.append(
                Problem(f"{path}.defaultVariant", f"{quote(default)} is not a variant ({names})")
            )

    meta = dict(set_meta)
    meta.update(_check_metadata(raw.get("metadata"), f"{path}.metadata", problems))

    targeting = raw.get("targeting")
    rule_problem: str | None = None
    if targeting is not None and not isinstance(targeting, dict):
        problems.append(
            Problem(f"{path}.targeting", f"must be a JSON Logic object, not {_describe(targeting)}")
        )
    elif targeting:
        # Depth first: substitution recurses, and a hostile document may nest deeply.
        rule_problem = _scan_rule(targeting, MAX_RULE_DEPTH, operators=False)
        if rule_problem is None:
            if evaluators:
                targeting = _substitute_refs(targeting, evaluators, [])
            rule_problem = _scan_rule(targeting, MAX_RULE_DEPTH)
        if rule_problem:
            soft.append(Problem(f"{path}.targeting", rule_problem, fatal=False))
    else:
        targeting = None

    if len(problems) > before or kind is None or not isinstance(variants, dict):
        return None
    return FlagDefinition(
        key=key,
        state=FlagState(str(state)),
        kind=kind,
        variants=variants,
        default_variant=default,
        targeting=targeting,
        metadata=meta,
        raw=raw,
        rule_problem=rule_problem,
    )
