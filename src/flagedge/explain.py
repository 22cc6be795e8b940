"""Why a flag answers what it answers: an interpreter over the definition that records its
decisions. Pure: no clock, no I/O; slower than the compiled hot path, never on it.

    Snapshot + key + context + now ──explain──► Explanation
        resolution   value, variant, reason (the same the engine gives: tests/test_explain.py
                     runs every golden case through both)
        decided_by   override | disabled | static | rule | parse-error | not-found
        steps        each condition of the rule's if-chains that was tested, with its result;
                     the one that matched is marked
        buckets      each ``fractional`` (and a rollout) that ran: the bucketing value, its
                     bucket number and every variant's boundaries

The interpreter walks the same JSON Logic the compiler turned into Python and calls the
same operators (jsonlogic.py, hashing.py) in the same order, mirroring the generated code's
choices: argument padding, ``$flagd`` variables, which side of ``sem_ver`` is checked
first, ``fractional``'s literal and computed buckets. ``describe`` renders a rule for
people ("plan is one of pro, enterprise") for the admin pages.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from . import codegen, jsonlogic
from .compiler import GENERAL_MESSAGE, CompiledFlag
from .definitions import MAX_RULE_DEPTH, quote, variant_for
from .engine import not_found
from .hashing import Scheme, hash_v3, implicit_hasher, thresholds
from .model import ErrorCode, FlagState, OverrideKind, Reason, Resolution
from .snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Step:
    """One condition of an if-chain, tested. ``path`` locates it in the flag's JSON."""

    path: str
    condition: str
    result: bool
    then: str  # what the branch answers, rendered

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Boundary:
    variant: str
    low: int  # the first bucket number of this variant
    high: int  # one past its last

    def to_json(self) -> dict[str, Any]:
        return {"variant": self.variant, "from": self.low, "to": self.high}


@dataclass(frozen=True, slots=True)
class Buckets:
    """A ``fractional`` (or a rollout) that ran: bucket = (hash * total) >> 32."""

    path: str
    by: str  # what was hashed, rendered
    hash: int | None  # None: the value could not be bucketed (missing, null...)
    bucket: int | None
    total: int
    boundaries: tuple[Boundary, ...]
    chosen: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "by": self.by,
            "hash": self.hash,
            "bucket": self.bucket,
            "total": self.total,
            "boundaries": [b.to_json() for b in self.boundaries],
            "chosen": self.chosen,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    resolution: Resolution
    decided_by: str
    summary: str
    steps: tuple[Step, ...] = ()
    buckets: tuple[Buckets, ...] = ()

    @property
    def matched(self) -> Step | None:
        return next((s for s in self.steps if s.result), None)

    def to_json(self) -> dict[str, Any]:
        matched = self.matched
        return {
            **self.resolution.to_json(),
            "decidedBy": self.decided_by,
            "summary": self.summary,
            "matched": None if matched is None else matched.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "buckets": [b.to_json() for b in self.buckets],
        }

    def lines(self) -> list[str]:
        """The explanation as sentences, for the CLI."""
        r = self.resolution
        value = quote(r.value) if r.variant is not None else "(the caller's default)"
        out = [f"{r.key}: {value}, variant {r.variant or '-'}, reason {r.reason}"]
        if r.error_code is not None:
            out.append(f"  error {r.error_code}: {r.error_message}")
        out.append(f"  because {self.summary}")
        for s in self.steps:
            mark = "MATCHED" if s.result else "no"
            out.append(f"  {mark:>7}  {s.condition}  (at {s.path}; then {s.then})")
        for b in self.buckets:
            if b.bucket is None:
                out.append(f"  bucketing by {b.by}: no bucket (the value is missing or unusable)")
                continue
            ranges = ", ".join(f"{x.variant} [{x.low}, {x.high})" for x in b.boundaries)
            out.append(
                f"  bucketing by {b.by}: bucket {b.bucket} of {b.total} -> {b.chosen} ({ranges})"
            )
        return out


# -- rendering rules for people --------------------------------------------------------------

_CMP = {"==": "=", "===": "=", "!=": "≠", "!==": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}


def describe(node: Any) -> str:
    """A JSON Logic expression as a short sentence; anything unusual as compact JSON."""
    try:
        return _describe(node, 0)
    except RecursionError:
        return "(too deeply nested to show)"


def _describe(node: Any, depth: int) -> str:
    if depth > 40:
        return "…"
    d = depth + 1
    if not isinstance(node, dict) or len(node) != 1:
        if isinstance(node, list) and all(not isinstance(x, dict | list) for x in node):
            return ", ".join(quote(x) for x in node) if node else "(empty list)"
        return quote(node)
    op, args = next(iter(node.items()))
    a = args if isinstance(args, list) else [args]
    if op == "$ref" and isinstance(args, str):
        return f"{args} (shared rule)"
    if op == "var":
        path = a[0] if a else ""
        return f"{path}" if isinstance(path, str) and path else "(the whole context)"
    if op in _CMP and len(a) == 2:
        return f"{_describe(a[0], d)} {_CMP[op]} {_describe(a[1], d)}"
    if op == "in" and len(a) == 2:
        if isinstance(a[1], list):
            return f"{_describe(a[0], d)} is one of {_describe(a[1], d)}"
        return f"{_describe(a[1], d)} contains {_describe(a[0], d)}"
    if op in ("starts_with", "ends_with") and len(a) == 2:
        verb = "starts with" if op == "starts_with" else "ends with"
        return f"{_describe(a[0], d)} {verb} {_describe(a[1], d)}"
    if op == "sem_ver" and len(a) == 3:
        return f"{_describe(a[0], d)} {a[1]} {_describe(a[2], d)} (semantic version)"
    if op in ("and", "or") and a:
        parts = [_describe(x, d) for x in a]
        wrapped = [f"({p})" if " and " in p or " or " in p else p for p in parts]
        return f" {op} ".join(wrapped)
    if op == "!" and a:
        return f"not ({_describe(a[0], d)})"
    if op == "!!" and a:
        return f"{_describe(a[0], d)} is set"
    if op == "fractional":
        return _describe_fractional(a)
    if op in ("if", "?:"):
        return "; ".join(f"{b['when'] or 'otherwise'}: {b['then']}" for b in outline(node))
    return quote(node)


def _describe_fractional(args: list[Any]) -> str:
    by = "targetingKey"
    buckets = args
    if args and not isinstance(args[0], list):
        by, buckets = _describe(args[0], 1), args[1:]
    weights = [b[1] if isinstance(b, list) and len(b) == 2 else 1 for b in buckets]
    numeric = [w if isinstance(w, int | float) and not isinstance(w, bool) else 0 for w in weights]
    total = sum(max(0, w) for w in numeric) or 1
    parts = []
    for b, w in zip(buckets, numeric, strict=True):
        name = b[0] if isinstance(b, list) and b else b
        parts.append(f"{_describe(name, 1)} {100 * max(0, w) / total:.4g}%")
    return f"split by {by}: " + ", ".join(parts)


def outline(targeting: Any) -> list[dict[str, Any]]:
    """A rule as branches, for the flag page: [{"when", "then", "path"}], ``when`` None for
    the fallback. A nested if-chain in a branch is flattened into conditions joined by and."""
    out: list[dict[str, Any]] = []
    _outline(targeting, "targeting", [], out, 0)
    return out


def _outline(
    node: Any, path: str, conditions: list[str], out: list[dict[str, Any]], depth: int
) -> None:
    if isinstance(node, dict) and len(node) == 1 and depth < 20:
        op, raw = next(iter(node.items()))
        args = raw if isinstance(raw, list) else [raw]
        if op in ("if", "?:") and len(args) >= 2:
            i = 0
            while i + 1 < len(args):
                cond = describe(args[i])
                _outline(args[i + 1], f"{path}.{op}[{i + 1}]", [*conditions, cond], out, depth + 1)
                i += 2
            rest = args[i] if i < len(args) else None
            _outline(rest, f"{path}.{op}[{i}]", conditions, out, depth + 1)
            return
    when = " and ".join(conditions) if conditions else None
    then = "the default variant" if node is None else describe(node)
    out.append({"when": when, "then": then, "path": path})


# -- the interpreter ---------------------------------------------------------------------------


_IMPLICIT = codegen._IMPLICIT  # fractional's bucketing value when the rule names none


class _Interpreter:
    def __init__(self, flag: CompiledFlag, scheme: Scheme, now: int) -> None:
        self.key = flag.key
        self.scheme = scheme
        self.now = now
        self.steps: list[Step] = []
        self.buckets: list[Buckets] = []

    # the statements: where the rule decides -------------------------------------------------

    def outcome(self, node: Any, ctx: Mapping[str, Any], path: str, depth: int = 0) -> Any:
        """The targeting result (a variant name, or anything variant_for reads)."""
        if isinstance(node, dict) and len(node) == 1:
            op, raw = next(iter(node.items()))
            args = raw if isinstance(raw, list) else [raw]
            if op in ("if", "?:") and len(args) >= 2 and depth < MAX_RULE_DEPTH:
                i = 0
                while i + 1 < len(args):
                    hit = jsonlogic.truthy(self.value(args[i], ctx, False))
                    self.steps.append(
                        Step(f"{path}.{op}[{i}]", describe(args[i]), hit, describe(args[i + 1]))
                    )
                    if hit:
                        return self.outcome(args[i + 1], ctx, f"{path}.{op}[{i + 1}]", depth + 1)
                    i += 2
                rest = args[i] if i < len(args) else None
                return self.outcome(rest, ctx, f"{path}.{op}[{i}]", depth + 1)
        return self.value(node, ctx, False, path)

    # expressions ----------------------------------------------------------------------------

    def value(self, node: Any, ctx: Any, sub: bool, path: str = "") -> Any:
        if node is None or isinstance(node, bool | str | int | float):
            return node
        if isinstance(node, list):
            if not codegen._has_operator(node):
                return node
            return [self.value(n, ctx, sub, path) for n in node]
        if not isinstance(node, dict) or len(node) != 1:
            return node  # a multi-key object is data
        op, raw = next(iter(node.items()))
        a = raw if isinstance(raw, list) else [raw]
        method = getattr(self, _METHODS[op])
        return method(a, ctx, sub, path)

    def _v(self, a: list[Any], i: int, ctx: Any, sub: bool) -> Any:
        return self.value(a[i] if i < len(a) else None, ctx, sub)

    def op_var(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        p = a[0] if a else None
        default = self._v(a, 1, ctx, sub) if len(a) > 1 else None
        if isinstance(p, list) and not p:
            p = None
        if p is None or p == "":
            return ctx if sub else self._with_flagd(ctx)
        if isinstance(p, str):
            parts = p.split(".")
            if not sub and parts[0] == "$flagd":
                if len(parts) == 1:
                    return {"flagKey": self.key, "timestamp": self.now}
                if len(parts) == 2 and parts[1] == "flagKey":
                    return self.key
                if len(parts) == 2 and parts[1] == "timestamp":
                    return self.now
                return default
            return jsonlogic.var_path(ctx, tuple(parts), default)
        if isinstance(p, dict | list):
            return jsonlogic.var_dynamic(ctx, self.value(p, ctx, sub), default)
        return jsonlogic.var_dynamic(ctx, p, default)

    def _with_flagd(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        data = dict(ctx)
        data["$flagd"] = {"flagKey": self.key, "timestamp": self.now}
        return data

    def _data(self, ctx: Any, sub: bool) -> Any:
        return ctx if sub else self._with_flagd(ctx)

    def op_missing(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.missing(self._data(ctx, sub), [self.value(x, ctx, sub) for x in a])

    def op_missing_some(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        need = self.value(a[0] if a else 0, ctx, sub)
        keys = self._v(a, 1, ctx, sub)
        return jsonlogic.missing_some(self._data(ctx, sub), need, keys)

    def op_if(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        i = 0
        while True:
            if i >= len(a):
                return None
            if i + 1 >= len(a):
                return self.value(a[i], ctx, sub)
            if jsonlogic.truthy(self.value(a[i], ctx, sub)):
                return self.value(a[i + 1], ctx, sub)
            i += 2

    def _pair(self, a: list[Any], ctx: Any, sub: bool) -> tuple[Any, Any]:
        return self._v(a, 0, ctx, sub), self._v(a, 1, ctx, sub)

    def op_eq(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.loose_eq(*self._pair(a, ctx, sub))

    def op_ne(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return not jsonlogic.loose_eq(*self._pair(a, ctx, sub))

    def op_strict_eq(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.strict_eq(*self._pair(a, ctx, sub))

    def op_strict_ne(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return not jsonlogic.strict_eq(*self._pair(a, ctx, sub))

    def _compare(self, a: list[Any], ctx: Any, sub: bool, helper: Any) -> Any:
        if len(a) >= 3:  # between: a < b < c, the third evaluated only when needed
            x, y = self.value(a[0], ctx, sub), self.value(a[1], ctx, sub)
            return helper(x, y) and helper(y, self.value(a[2], ctx, sub))
        return helper(*self._pair(a, ctx, sub))

    def op_lt(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._compare(a, ctx, sub, jsonlogic.lt)

    def op_le(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._compare(a, ctx, sub, jsonlogic.le)

    def op_gt(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._compare(a, ctx, sub, jsonlogic.gt)

    def op_ge(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._compare(a, ctx, sub, jsonlogic.ge)

    def op_not(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return not jsonlogic.truthy(self._v(a, 0, ctx, sub))

    def op_notnot(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.truthy(self._v(a, 0, ctx, sub))

    def op_and(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        result = None
        for x in a:
            result = self.value(x, ctx, sub)
            if not jsonlogic.truthy(result):
                return result
        return result

    def op_or(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        result = None
        for x in a:
            result = self.value(x, ctx, sub)
            if jsonlogic.truthy(result):
                return result
        return result

    def _all(self, a: list[Any], ctx: Any, sub: bool) -> list[Any]:
        return [self.value(x, ctx, sub) for x in a]

    def op_add(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.add(*self._all(a, ctx, sub))

    def op_mul(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.mul(*self._all(a, ctx, sub))

    # The compiled rule pads these to two arguments: {"-": [5]} is sub(5, None).
    def op_sub(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.sub(*self._all([*a, None][:2], ctx, sub))

    def op_div(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.div(*self._all([*a, None, None][:2], ctx, sub))

    def op_mod(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.mod(*self._all([*a, None, None][:2], ctx, sub))

    def op_min(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.minimum(*self._all(a, ctx, sub))

    def op_max(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.maximum(*self._all(a, ctx, sub))

    def op_cat(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.cat(*self._all(a, ctx, sub))

    def op_substr(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.substr(*self._all(a[:3], ctx, sub))

    def op_merge(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.merge(*self._all(a, ctx, sub))

    def op_in(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.contains(*self._pair(a, ctx, sub))

    def _fn(self, node: Any) -> Any:
        return lambda item, now: self.value(node, item, True)

    def _iter(self, helper: Any, a: list[Any], ctx: Any, sub: bool) -> Any:
        items = self._v(a, 0, ctx, sub)
        return helper(items, self._fn(a[1] if len(a) > 1 else None), self.now)

    def op_map(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._iter(jsonlogic.op_map, a, ctx, sub)

    def op_filter(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._iter(jsonlogic.op_filter, a, ctx, sub)

    def op_all(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._iter(jsonlogic.op_all, a, ctx, sub)

    def op_some(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._iter(jsonlogic.op_some, a, ctx, sub)

    def op_none(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return self._iter(jsonlogic.op_none, a, ctx, sub)

    def op_reduce(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        items = self._v(a, 0, ctx, sub)
        fn = self._fn(a[1] if len(a) > 1 else None)
        return jsonlogic.op_reduce(items, fn, self._v(a, 2, ctx, sub), self.now)

    def op_starts_with(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.starts_with(*self._pair(a, ctx, sub)) if len(a) == 2 else None

    def op_ends_with(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        return jsonlogic.ends_with(*self._pair(a, ctx, sub)) if len(a) == 2 else None

    def op_sem_ver(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        if len(a) != 3:
            return None
        right = a[2]
        if not codegen._has_operator(right) and not isinstance(right, list | dict):
            # As compiled: a constant right side is parsed first; an invalid one decides.
            key = jsonlogic.semver_key(right)
            if key is None:
                return None
            return jsonlogic.semver_compare(
                jsonlogic.semver_key(self.value(a[0], ctx, sub)), self.value(a[1], ctx, sub), key
            )
        return jsonlogic.sem_ver(*self._all(a, ctx, sub))

    def op_fractional(self, a: list[Any], ctx: Any, sub: bool, path: str) -> Any:
        by, nodes, literal = codegen.fraction_parts(a)
        if literal and codegen._parse_buckets(nodes) is None:
            # As compiled: unusable literal buckets answer None without hashing anything.
            self.buckets.append(Buckets(path, self._by(by), None, None, 0, (), None))
            return None
        h = self._hash(by, ctx, sub)
        buckets = nodes if literal else [self.value(b, ctx, sub) for b in nodes]
        parsed = codegen._parse_buckets(buckets)
        if parsed is None:
            self.buckets.append(Buckets(path, self._by(by), h, None, 0, (), None))
            return None
        names, bounds, total = parsed
        chosen = None if h is None else names[bisect.bisect_right(thresholds(bounds, total), h)]
        lows = [0, *bounds[:-1]]
        self.buckets.append(
            Buckets(
                path,
                self._by(by),
                h,
                None if h is None else (h * total) >> 32,
                total,
                tuple(
                    Boundary(str(n), lo, hi) for n, lo, hi in zip(names, lows, bounds, strict=True)
                ),
                chosen,
            )
        )
        return chosen

    def _by(self, by: Any) -> str:
        if by is _IMPLICIT:
            return "flag key + targetingKey" if self.scheme is Scheme.V2 else "targetingKey"
        return describe(by)

    def _hash(self, by: Any, ctx: Any, sub: bool) -> int | None:
        if self.scheme is Scheme.V2:
            value = None if by is _IMPLICIT else self.value(by, ctx, sub)
            return codegen._hash_v2(codegen._v2_key(value, self.key, ctx))
        if by is _IMPLICIT:
            tk = ctx.get("targetingKey")  # on an array item this raises, as compiled: GENERAL
            if tk.__class__ is not str or not tk:
                return None
            return implicit_hasher(Scheme.V3, self.key)(tk)
        value = self.value(by, ctx, sub)
        return None if value.__class__ is list else hash_v3(value)


_METHODS = {
    "var": "op_var",
    "missing": "op_missing",
    "missing_some": "op_missing_some",
    "if": "op_if",
    "?:": "op_if",
    "==": "op_eq",
    "!=": "op_ne",
    "===": "op_strict_eq",
    "!==": "op_strict_ne",
    "<": "op_lt",
    "<=": "op_le",
    ">": "op_gt",
    ">=": "op_ge",
    "!": "op_not",
    "!!": "op_notnot",
    "and": "op_and",
    "or": "op_or",
    "+": "op_add",
    "*": "op_mul",
    "-": "op_sub",
    "/": "op_div",
    "%": "op_mod",
    "min": "op_min",
    "max": "op_max",
    "cat": "op_cat",
    "substr": "op_substr",
    "merge": "op_merge",
    "in": "op_in",
    "map": "op_map",
    "filter": "op_filter",
    "all": "op_all",
    "some": "op_some",
    "none": "op_none",
    "reduce": "op_reduce",
    "starts_with": "op_starts_with",
    "ends_with": "op_ends_with",
    "sem_ver": "op_sem_ver",
    "fractional": "op_fractional",
}


# -- the entry point ---------------------------------------------------------------------------


def _resolution(flag: CompiledFlag, variant: str | None, reason: Reason) -> Resolution:
    value = None if variant is None else flag.variants[variant]
    return Resolution(flag.key, value, variant, reason, metadata=flag.metadata)


def _error(flag: CompiledFlag, code: ErrorCode, message: str) -> Resolution:
    return Resolution(flag.key, None, None, Reason.ERROR, code, message, flag.metadata)


def explain(snapshot: Snapshot, key: str, context: Mapping[str, Any], now: int) -> Explanation:
    """Evaluate ``key`` for ``context`` step by step. Never raises for data problems."""
    flag = snapshot.flags.get(key)
    if flag is None:
        return Explanation(not_found(key), "not-found", f"no flag named {quote(key)}")
    ov = flag.override
    buckets: list[Buckets] = []
    if ov is not None and ov.kind is OverrideKind.KILL:
        what = f"variant {quote(ov.variant)}" if ov.variant else "the caller's default"
        return Explanation(
            _resolution(flag, ov.variant, Reason.DISABLED),
            "override",
            f"a kill switch is on: every context gets {what}",
        )
    if ov is not None and ov.kind is OverrideKind.ROLLOUT:
        assert ov.variant is not None and ov.percent is not None
        basis = round(ov.percent * 100)
        (limit,) = thresholds((basis,), 10_000)
        tk = context.get("targetingKey")
        h = implicit_hasher(snapshot.scheme, key)(tk) if tk.__class__ is str and tk else None
        inside = h is not None and h < limit
        buckets.append(
            Buckets(
                "override",
                "targetingKey",
                h,
                None if h is None else (h * 10_000) >> 32,
                10_000,
                (Boundary(ov.variant, 0, basis), Boundary("(as defined)", basis, 10_000)),
                ov.variant if inside else None,
            )
        )
        if inside:
            return Explanation(
                _resolution(flag, ov.variant, Reason.TARGETING_MATCH),
                "override",
                f"a rollout serves {quote(ov.variant)} to {ov.percent:g}% of targeting keys, "
                "and this one is inside it",
                buckets=tuple(buckets),
            )
    inner = _explain_definition(flag, snapshot.scheme, context, now)
    if buckets:
        why = "no targeting key" if buckets[0].hash is None else "this key is outside it"
        return Explanation(
            inner.resolution,
            inner.decided_by,
            f"a rollout of {quote(ov.variant if ov else None)} does not include it ({why}); "
            f"{inner.summary}",
            inner.steps,
            (*buckets, *inner.buckets),
        )
    return inner


def _explain_definition(
    flag: CompiledFlag, scheme: Scheme, context: Mapping[str, Any], now: int
) -> Explanation:
    d = flag.definition
    if d.state is FlagState.DISABLED:
        return Explanation(
            _resolution(flag, None, Reason.DISABLED), "disabled", "the flag's state is DISABLED"
        )
    if d.targeting is None:
        # Without a default variant there is no value to be static about: DEFAULT, as compiled.
        reason = Reason.STATIC if d.default_variant is not None else Reason.DEFAULT
        return Explanation(
            _resolution(flag, d.default_variant, reason),
            "static",
            "the flag has no targeting rule: everyone gets the default variant",
        )
    if flag.rule_problem is not None:
        message = f"invalid targeting: {flag.rule_problem}"
        return Explanation(
            _error(flag, ErrorCode.PARSE_ERROR, message), "parse-error", f"its rule is invalid: "
            f"{flag.rule_problem}"
        )  # fmt: skip
    interpreter = _Interpreter(flag, scheme, now)
    try:
        result = interpreter.outcome(d.targeting, context, "targeting")
    except Exception as exc:  # the compiled rule turns any exception into GENERAL too
        return Explanation(
            _error(flag, ErrorCode.GENERAL, GENERAL_MESSAGE),
            "rule",
            f"the rule failed on this context ({type(exc).__name__})",
            tuple(interpreter.steps),
            tuple(interpreter.buckets),
        )
    steps, buckets = tuple(interpreter.steps), tuple(interpreter.buckets)
    name = variant_for(result)
    matched = next((s for s in steps if s.result), None)
    where = f"the condition {matched.condition!r} matched" if matched else ""
    if not where and steps:
        where = "no condition matched"
    if buckets and buckets[-1].chosen is not None and buckets[-1].chosen == name:
        b = buckets[-1]
        where = (where + "; " if where else "") + f"bucket {b.bucket} of {b.total} falls to {name}"
    if name is None:
        summary = (where + ": " if where else "") + "the rule gave no variant, so the default"
        return Explanation(
            _resolution(flag, d.default_variant, Reason.DEFAULT), "rule", summary, steps, buckets
        )
    if name not in flag.variants:
        return Explanation(
            _error(flag, ErrorCode.GENERAL, GENERAL_MESSAGE),
            "rule",
            f"the rule answered {quote(result)}, which names no variant",
            steps,
            buckets,
        )
    summary = (where + ": " if where else "the rule answers ") + f"variant {quote(name)}"
    return Explanation(
        _resolution(flag, name, Reason.TARGETING_MATCH), "rule", summary, steps, buckets
    )
