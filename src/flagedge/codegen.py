"""Code generation: a flag's JSON Logic becomes one Python function. Pure.

    FlagDefinition.targeting (validated, $refs substituted; definitions.py)
        │  _Gen: JSON Logic -> Python source whose only literals are names it made up;
        │        every value from the document is bound as a closure cell
        ▼
    rule(ctx, now) -> outcome number       (compiler.py turns it into a prebuilt Resolution)

A request pays for no interpretation and no per-node call: a top-level ``if`` becomes
``if``/``return`` statements returning outcome numbers, literal lists become frozensets,
fractional thresholds and constant semvers are computed here. Because no definition text
reaches the source, two rules of the same shape produce identical source, and the code
object is compiled once and shared (``_factory_for`` is a pure memo); each flag only binds
its own constants. A rule that cannot be compiled yields a rule that always answers
PARSE_ERROR: one bad flag never takes the set down. The operators the generated code calls
for the uncommon cases live in jsonlogic.py.

An evaluator that a rule references more than once (``$ref``: definitions.py shares one
body between the references) becomes one helper function the rule calls, so that its code
is generated and compiled once; every operation generated counts against the flag's
compile budget (``max_rule_cost``), and a rule over it answers PARSE_ERROR.
"""

from __future__ import annotations

import bisect
import functools
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import hashing, jsonlogic
from ._accel import speedups
from .definitions import (
    DEFAULT_LIMITS,
    MAX_RULE_DEPTH,
    OPERATORS,
    FlagDefinition,
    quote,
    variant_for,
)
from .hashing import Scheme

Rule = Callable[[Mapping[str, Any], int], int]

_HOIST_EVERY = 24  # split generated expressions this deep into helper functions

# Outcome slots that follow a flag's n variants (slot i < n is TARGETING_MATCH of variant i).
SLOT_DEFAULT = 0
SLOT_STATIC = 1
SLOT_DISABLED = 2
SLOT_PARSE_ERROR = 3
SLOT_GENERAL = 4
N_SLOTS = 5


class _Unsupported(Exception):
    """A rule that compiles to PARSE_ERROR; message says why."""


# The walrus sits in the condition: a conditional expression evaluates its test first.
_NUMERIC_TEST = "(({t} := {v}).__class__ is int or {t}.__class__ is float)"


_RUNTIME: dict[str, Any] = {
    "_truthy": jsonlogic.truthy,
    "_loose_eq": jsonlogic.loose_eq,
    "_strict_eq": jsonlogic.strict_eq,
    "_lt": jsonlogic.lt,
    "_le": jsonlogic.le,
    "_gt": jsonlogic.gt,
    "_ge": jsonlogic.ge,
    "_add": jsonlogic.add,
    "_mul": jsonlogic.mul,
    "_sub": jsonlogic.sub,
    "_div": jsonlogic.div,
    "_mod": jsonlogic.mod,
    "_min": jsonlogic.minimum,
    "_max": jsonlogic.maximum,
    "_cat": jsonlogic.cat,
    "_substr": jsonlogic.substr,
    "_contains": jsonlogic.contains,
    "_merge": jsonlogic.merge,
    "_var_path": jsonlogic.var_path,
    "_var_dynamic": jsonlogic.var_dynamic,
    "_missing": jsonlogic.missing,
    "_missing_some": jsonlogic.missing_some,
    "_map": jsonlogic.op_map,
    "_filter": jsonlogic.op_filter,
    "_all": jsonlogic.op_all,
    "_some": jsonlogic.op_some,
    "_none": jsonlogic.op_none,
    "_reduce": jsonlogic.op_reduce,
    "_starts_with": jsonlogic.starts_with,
    "_ends_with": jsonlogic.ends_with,
    "_semver_key": jsonlogic.semver_key,
    "_semver_compare": jsonlogic.semver_compare,
    "_semver_str": functools.lru_cache(maxsize=4096)(jsonlogic.semver_key),
    "_sem_ver": jsonlogic.sem_ver,
    "_mm": hashing.murmur3_32,
    "_ctext": hashing.cbor_text,
    "_hash_v3": hashing.hash_v3,
    "_bisect": bisect.bisect_right,
    "_Exception": Exception,
}


def _pick_bucket(h: int | None, buckets: Any) -> Any:
    """Choose a variant from buckets computed at evaluation time (the rare dynamic form)."""
    if h is None:
        return None
    parsed = _parse_buckets(buckets)
    if parsed is None:
        return None
    names, bounds, total = parsed
    return names[bisect.bisect_right(hashing.thresholds(bounds, total), h)]


def _parse_buckets(buckets: Any) -> tuple[list[Any], list[int], int] | None:
    names: list[Any] = []
    bounds: list[int] = []
    total = 0
    for b in buckets:
        if not isinstance(b, list) or not 1 <= len(b) <= 2:
            return None
        weight: Any = 1
        if len(b) == 2:
            weight = b[1]
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                return None
            if isinstance(weight, float):
                if not weight.is_integer():
                    return None
                weight = int(weight)
        total += max(0, weight)
        names.append(b[0])
        bounds.append(total)
    if total <= 0 or total > hashing.MAX_TOTAL_WEIGHT:
        return None
    return names, bounds, total


def _v2_key(value: Any, flag_key: str, ctx: Any) -> str | None:
    """v2 bucketing string: a string argument as is; null falls back to the implicit key."""
    if value.__class__ is str:
        return str(value)
    if value is not None:
        return None
    tk = ctx.get("targetingKey") if isinstance(ctx, Mapping) else None
    if tk.__class__ is not str or not tk:
        return None
    return flag_key + str(tk)


def _hash_v2(s: str | None) -> int | None:
    return None if s is None else hashing.hash_v2(s)


if speedups is not None:
    _RUNTIME["_v3pair"] = speedups.v3_pair
    _RUNTIME["_v3choose"] = speedups.v3_choose
_RUNTIME["_pick_bucket"] = _pick_bucket
_RUNTIME["_v2_key"] = _v2_key
_RUNTIME["_hash_v2"] = _hash_v2


@functools.lru_cache(maxsize=4096)
def _factory_for(source: str) -> Callable[..., Any]:
    """Compile generated source once per shape and return its ``make`` function.

    Rules of one shape share one code object and one globals dict (the runtime helpers);
    a flag's own values reach it as closure cells through ``make``'s parameters. Sharing
    the globals matters: CPython specialises global lookups per code object against one
    globals dict, and rotating many dicts through one code object defeats that.
    """
    namespace = dict(_RUNTIME)
    exec(compile(source, "<flagedge rule>", "exec"), namespace)
    factory: Callable[..., Any] = namespace["make"]
    return factory


class _Gen:
    """Turns one flag's JSON Logic into Python source plus a namespace of bound values."""

    def __init__(
        self,
        flag_key: str,
        scheme: Scheme,
        outcome_of: Callable[[Any], int],
        *,
        shared: frozenset[int] = frozenset(),
        budget: int = DEFAULT_LIMITS.max_rule_cost,
    ) -> None:
        self.flag_key = flag_key
        self.scheme = scheme
        self.outcome_of = outcome_of
        self.shared = shared  # ids of operator nodes the rule reaches more than once
        self.shared_helpers: dict[tuple[int, bool], tuple[str, str]] = {}
        self.budget = budget
        self.cost = 0
        self.consts: list[Any] = []
        self.const_names: dict[tuple[type, Any], str] = {}
        self.helpers: list[str] = []
        self.prelude: list[str] = []  # lines run once per instantiation, before the rule
        self.ntemp = 0
        self.sub = False  # inside map/filter/...: ctx is the current item, not the context

    # names -------------------------------------------------------------------------------

    def const(self, value: Any) -> str:
        hashable = isinstance(value, str | int | float | bool | bytes | tuple | frozenset)
        if hashable and not (isinstance(value, float) and value != value):
            memo = (type(value), value)
            if memo in self.const_names:
                return self.const_names[memo]
        name = f"c{len(self.consts)}"
        self.consts.append(value)
        if hashable:
            self.const_names[(type(value), value)] = name
        return name

    @staticmethod
    def out(outcome: int) -> str:
        """The name of an outcome. Bound to its number for ``rule`` and to its Resolution
        for the resolver built from the same code (see ``RuleCode.bind``)."""
        return f"o{outcome}"

    def temp(self) -> str:
        self.ntemp += 1
        return f"t{self.ntemp}"

    def helper(self, body_src: str, sub: bool) -> str:
        name = f"h{len(self.helpers)}"
        self.helpers.append(f"def {name}(ctx, now):\n    return {body_src}\n")
        return name

    # expressions -------------------------------------------------------------------------
    # value(node) -> (source, kind) where kind is "bool" (a Python bool), "optbool"
    # (True/False/None), "str", "num" or "any".

    def value(self, node: Any, depth: int = 0) -> tuple[str, str]:
        if isinstance(node, dict) and len(node) == 1:
            if self.shared and id(node) in self.shared:
                return self._shared(node)
            if depth and depth % _HOIST_EVERY == 0:
                src, kind = self._value(node, 0)
                return f"{self.helper(src, self.sub)}(ctx, now)", kind
        return self._value(node, depth)

    def _shared(self, node: Any) -> tuple[str, str]:
        """A node reached more than once (a referenced evaluator): one helper, one call per
        use. Keyed by ``sub`` too: inside map/filter, ``ctx`` is the current item."""
        key = (id(node), self.sub)
        found = self.shared_helpers.get(key)
        if found is None:
            src, kind = self._value(node, 0)
            found = self.shared_helpers[key] = (self.helper(src, self.sub), kind)
        return f"{found[0]}(ctx, now)", found[1]

    def charge(self) -> None:
        """Count one generated operation against the flag's compile budget."""
        self.cost += 1
        if self.cost > self.budget:
            raise _Unsupported(
                f"rule compiles to more than {self.budget} operations (max-rule-cost; "
                "a $ref used several times counts once)"
            )

    def test(self, node: Any, depth: int = 0) -> str:
        """Source of a Python bool: the JavaScript truthiness of node."""
        if isinstance(node, dict) and len(node) == 1 and id(node) not in self.shared:
            op, args = next(iter(node.items()))
            args = args if isinstance(args, list) else [args]
            if op in _TEST_FORMS:
                self.charge()
            if op == "and" and args:
                return "(" + " and ".join(self.test(a, depth + 1) for a in args) + ")"
            if op == "or" and args:
                return "(" + " or ".join(self.test(a, depth + 1) for a in args) + ")"
            if op == "!":
                return f"(not {self.test(args[0] if args else None, depth + 1)})"
            if op == "!!":
                return self.test(args[0] if args else None, depth + 1)
            if op in ("if", "?:"):
                return self._if(args, depth, lambda n, d: self.test(n, d))
            if op in ("starts_with", "ends_with") and len(args) == 2 and isinstance(args[1], str):
                # As a condition, "not a string" and "no match" are both false: one test.
                t = self.temp()
                method = "startswith" if op == "starts_with" else "endswith"
                subject = self.value(args[0], depth + 1)[0]
                suffix = self.const(args[1])
                return f"(({t} := {subject}).__class__ is str and {t}.{method}({suffix}))"
        src, kind = self.value(node, depth)
        if kind == "bool":
            return src
        if kind == "optbool":
            return f"({src} is True)"
        return f"_truthy({src})"

    def _args(self, args: Any) -> list[Any]:
        return args if isinstance(args, list) else [args]

    def _value(self, node: Any, depth: int) -> tuple[str, str]:
        if node is None:
            return "None", "any"
        if node is True or node is False:
            return ("True" if node else "False"), "bool"
        if isinstance(node, str):
            return self.const(node), "str"
        if isinstance(node, int | float):
            return self.const(node), "num"
        if isinstance(node, list):
            if not _has_operator(node):
                return self.const(node), "any"
            return "[" + ", ".join(self.value(n, depth + 1)[0] for n in node) + "]", "any"
        if not isinstance(node, dict) or len(node) != 1:
            return self.const(node), "any"  # a multi-key object is data, not an operation
        op, raw_args = next(iter(node.items()))
        args = self._args(raw_args)
        d = depth + 1
        self.charge()
        method = _OPS.get(op)
        if method is None:
            raise _Unsupported(f"unknown operator {quote(op)}")
        return method(self, args, d)

    def _if(self, args: list[Any], depth: int, branch: Callable[[Any, int], str]) -> str:
        if not args:
            return branch(None, depth)
        if len(args) == 1:
            return branch(args[0], depth)  # JSON Logic: a lone argument is the result
        cond, then, rest = args[0], args[1], args[2:]
        orelse = self._if(rest, depth + 1, branch) if rest else branch(None, depth)
        return f"({branch(then, depth + 1)} if {self.test(cond, depth + 1)} else {orelse})"

    def op_if(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._if(args, d, lambda n, dd: self.value(n, dd)[0]), "any"

    def _two(self, args: list[Any], d: int) -> tuple[tuple[str, str], tuple[str, str], Any, Any]:
        a = args[0] if args else None
        b = args[1] if len(args) > 1 else None
        return self.value(a, d), self.value(b, d), a, b

    def op_eq(self, args: list[Any], d: int, negate: bool = False) -> tuple[str, str]:
        (sa, _ka), (sb, _kb), a, b = self._two(args, d)
        # Put a constant on the right so the fast path can test the other side's class.
        if _is_const(a) and not _is_const(b):
            sa, sb, a, b = sb, sa, b, a
        t = self.temp()
        # Equal values answer after one comparison; only a value of another type goes on
        # to JavaScript's coercions. (Python's == never raises on JSON values.)
        if isinstance(b, str):
            src = f"(({t} := {sa}) == {sb} or ({t}.__class__ is not str and _loose_eq({t}, {sb})))"
        elif isinstance(b, int | float) and not isinstance(b, bool):
            src = (
                f"(({t} := {sa}) == {sb} or ({t}.__class__ is not int "
                f"and {t}.__class__ is not float and _loose_eq({t}, {sb})))"
            )
        else:
            src = f"_loose_eq({sa}, {sb})"
        return (f"(not {src})" if negate else src), "bool"

    def op_ne(self, args: list[Any], d: int) -> tuple[str, str]:
        return self.op_eq(args, d, negate=True)

    def op_strict_eq(self, args: list[Any], d: int, negate: bool = False) -> tuple[str, str]:
        (sa, _), (sb, _), a, b = self._two(args, d)
        if isinstance(b, str) or isinstance(a, str):
            src = f"({sa} == {sb})"  # nothing but an equal str equals a str in Python
        else:
            src = f"_strict_eq({sa}, {sb})"
        return (f"(not {src})" if negate else src), "bool"

    def op_strict_ne(self, args: list[Any], d: int) -> tuple[str, str]:
        return self.op_strict_eq(args, d, negate=True)

    def _compare(self, args: list[Any], d: int, pyop: str, helper: str) -> tuple[str, str]:
        if len(args) >= 3:  # between: a < b < c
            sa = self.value(args[0], d)[0]
            sb = self.value(args[1], d)[0]
            sc = self.value(args[2], d)[0]
            t = self.temp()
            return f"({helper}({sa}, ({t} := {sb})) and {helper}({t}, {sc}))", "bool"
        (sa, _), (sb, _), a, b = self._two(args, d)
        t = self.temp()
        if isinstance(b, int | float) and not isinstance(b, bool) and not _is_const(a):
            num = _NUMERIC_TEST.format(t=t, v=sa)
            return f"({t} {pyop} {sb} if {num} else {helper}({t}, {sb}))", "bool"
        if isinstance(a, int | float) and not isinstance(a, bool) and not _is_const(b):
            num = _NUMERIC_TEST.format(t=t, v=sb)
            return f"({sa} {pyop} {t} if {num} else {helper}({sa}, {t}))", "bool"
        return f"{helper}({sa}, {sb})", "bool"

    def op_lt(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._compare(args, d, "<", "_lt")

    def op_le(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._compare(args, d, "<=", "_le")

    def op_gt(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._compare(args, d, ">", "_gt")

    def op_ge(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._compare(args, d, ">=", "_ge")

    def op_not(self, args: list[Any], d: int) -> tuple[str, str]:
        return f"(not {self.test(args[0] if args else None, d)})", "bool"

    def op_notnot(self, args: list[Any], d: int) -> tuple[str, str]:
        return self.test(args[0] if args else None, d), "bool"

    def _andor(self, args: list[Any], d: int, is_and: bool) -> tuple[str, str]:
        if not args:
            return "None", "any"
        parts = [self.value(a, d) for a in args]
        if all(k == "bool" for _, k in parts):
            joiner = " and " if is_and else " or "
            return "(" + joiner.join(s for s, _ in parts) + ")", "bool"
        src = parts[-1][0]
        for s, k in reversed(parts[:-1]):
            t = self.temp()
            truth = f"({t} := {s})" if k == "bool" else f"_truthy({t} := {s})"
            src = f"({src} if {truth} else {t})" if is_and else f"({t} if {truth} else {src})"
        return src, "any"

    def op_and(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._andor(args, d, True)

    def op_or(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._andor(args, d, False)

    def _call(self, helper: str, args: list[Any], d: int, kind: str = "any") -> tuple[str, str]:
        return f"{helper}(" + ", ".join(self.value(a, d)[0] for a in args) + ")", kind

    def op_add(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_add", args, d, "num")

    def op_mul(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_mul", args, d, "num")

    def op_sub(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_sub", [*args, None][:2], d, "num")

    def op_div(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_div", [*args, None, None][:2], d, "num")

    def op_mod(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_mod", [*args, None, None][:2], d, "num")

    def op_min(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_min", args, d, "num")

    def op_max(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_max", args, d, "num")

    def op_cat(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_cat", args, d, "str")

    def op_substr(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_substr", args[:3], d, "str")

    def op_merge(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._call("_merge", args, d)

    def op_in(self, args: list[Any], d: int) -> tuple[str, str]:
        (sa, _), (sb, _), _a, b = self._two(args, d)
        t = self.temp()
        if isinstance(b, list) and b and all(isinstance(x, str) for x in b):
            fs = self.const(frozenset(b))
            return (
                f"({t} in {fs} if ({t} := {sa}).__class__ is str else _contains({t}, {sb}))",
                "bool",
            )
        if isinstance(b, str):
            return (
                f"({t} in {sb} if ({t} := {sa}).__class__ is str else _contains({t}, {sb}))",
                "bool",
            )
        return f"_contains({sa}, {sb})", "bool"

    def op_var(self, args: list[Any], d: int) -> tuple[str, str]:
        path = args[0] if args else None
        default_src = self.value(args[1], d)[0] if len(args) > 1 else "None"
        if isinstance(path, list) and not path:
            path = None
        if path is None or path == "":
            return (
                "ctx" if self.sub else f"_with_flagd(ctx, now, {self.const(self.flag_key)})"
            ), "any"
        if isinstance(path, str):
            parts = path.split(".")
            if not self.sub and parts[0] == "$flagd":
                if len(parts) == 1:
                    return f"_with_flagd({{}}, now, {self.const(self.flag_key)})['$flagd']", "any"
                if len(parts) == 2 and parts[1] == "flagKey":
                    return self.const(self.flag_key), "str"
                if len(parts) == 2 and parts[1] == "timestamp":
                    return "now", "num"
                return default_src, "any"
            if len(parts) == 1 and not self.sub:
                key = self.const(path)
                if default_src == "None":
                    return f"ctx.get({key})", "any"
                t = self.temp()
                return f"({t} if ({t} := ctx.get({key})) is not None else {default_src})", "any"
            return f"_var_path(ctx, {self.const(tuple(parts))}, {default_src})", "any"
        if isinstance(path, dict | list):
            return f"_var_dynamic(ctx, {self.value(path, d)[0]}, {default_src})", "any"
        return f"_var_dynamic(ctx, {self.const(path)}, {default_src})", "any"

    def op_missing(self, args: list[Any], d: int) -> tuple[str, str]:
        items = "[" + ", ".join(self.value(a, d)[0] for a in args) + "]"
        return f"_missing({self._data()}, {items})", "any"

    def op_missing_some(self, args: list[Any], d: int) -> tuple[str, str]:
        need = self.value(args[0] if args else 0, d)[0]
        keys = self.value(args[1] if len(args) > 1 else None, d)[0]
        return f"_missing_some({self._data()}, {need}, {keys})", "any"

    def _data(self) -> str:
        return "ctx" if self.sub else f"_with_flagd(ctx, now, {self.const(self.flag_key)})"

    def _sublogic(self, node: Any) -> str:
        outer = self.sub
        self.sub = True
        try:
            src, _ = self.value(node, 0)
        finally:
            self.sub = outer
        return self.helper(src, True)

    def _iter_op(self, helper: str, args: list[Any], d: int, kind: str) -> tuple[str, str]:
        items = self.value(args[0] if args else None, d)[0]
        fn = self._sublogic(args[1] if len(args) > 1 else None)
        return f"{helper}({items}, {fn}, now)", kind

    def op_map(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._iter_op("_map", args, d, "any")

    def op_filter(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._iter_op("_filter", args, d, "any")

    def op_all(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._iter_op("_all", args, d, "bool")

    def op_some(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._iter_op("_some", args, d, "bool")

    def op_none(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._iter_op("_none", args, d, "bool")

    def op_reduce(self, args: list[Any], d: int) -> tuple[str, str]:
        items = self.value(args[0] if args else None, d)[0]
        fn = self._sublogic(args[1] if len(args) > 1 else None)
        init = self.value(args[2] if len(args) > 2 else None, d)[0]
        return f"_reduce({items}, {fn}, {init}, now)", "any"

    def _string_test(self, args: list[Any], d: int, method: str, helper: str) -> tuple[str, str]:
        if len(args) != 2:
            return "None", "optbool"
        (sa, _), (sb, _), _a, b = self._two(args, d)
        if isinstance(b, str):
            t = self.temp()
            return f"({t}.{method}({sb}) if ({t} := {sa}).__class__ is str else None)", "optbool"
        return f"{helper}({sa}, {sb})", "optbool"

    def op_starts_with(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._string_test(args, d, "startswith", "_starts_with")

    def op_ends_with(self, args: list[Any], d: int) -> tuple[str, str]:
        return self._string_test(args, d, "endswith", "_ends_with")

    def op_sem_ver(self, args: list[Any], d: int) -> tuple[str, str]:
        if len(args) != 3:
            return "None", "optbool"
        left = self.value(args[0], d)[0]
        op = self.value(args[1], d)[0]
        right = args[2]
        if _is_const(right) and not isinstance(right, list | dict):
            key = jsonlogic.semver_key(right)
            if key is None:
                return "None", "optbool"
            t = self.temp()
            # Versions in contexts repeat a lot: string parses are memoised.
            parsed = f"(_semver_str({t}) if ({t} := {left}).__class__ is str else _semver_key({t}))"
            op_value = args[1]
            k = self.temp()
            if op_value in ("=", "!=", "<", "<=", ">", ">="):
                pyop = "==" if op_value == "=" else op_value
                return (
                    f"({k} {pyop} {self.const(key)} if ({k} := {parsed}) is not None else None)",
                    "optbool",
                )
            if op_value in ("^", "~"):
                width = 1 if op_value == "^" else 2
                head = self.const(key[:width])
                return (
                    f"({k}[:{width}] == {head} if ({k} := {parsed}) is not None else None)",
                    "optbool",
                )
            return f"_semver_compare({parsed}, {op}, {self.const(key)})", "optbool"
        return f"_sem_ver({left}, {op}, {self.value(right, d)[0]})", "optbool"

    # fractional ----------------------------------------------------------------------------

    def _hash_src(self, by: Any, d: int) -> str:
        """Source of the unsigned hash of the bucketing value (None when unbucketable)."""
        if self.scheme is Scheme.V2:
            if by is _IMPLICIT:
                return f"_hash_v2(_v2_key(None, {self.const(self.flag_key)}, ctx))"
            by_src = self.value(by, d)[0]
            return f"_hash_v2(_v2_key({by_src}, {self.const(self.flag_key)}, ctx))"
        if by is _IMPLICIT and not self.sub and "_v3pair" in _RUNTIME:
            # The C hash takes the targeting key as it comes (None unless a non-empty str).
            prefix = self.const(hashing.v3_pair_prefix(self.flag_key))
            return f"_v3pair({prefix}, ctx.get('targetingKey'))"
        if by is _IMPLICIT:
            raw_prefix = hashing.v3_pair_prefix(self.flag_key)
            prefix = self.const(raw_prefix)
            # array(2) + flag key + text header, one per UTF-8 length below CBOR_PREFIXED:
            # the request then does one concatenation (UUID keys are 36 bytes).
            headers = hashing.CBOR_TEXT_HEADERS[: hashing.CBOR_PREFIXED]
            by_len = self.const(tuple(raw_prefix + h for h in headers))
            t, b = self.temp(), self.temp()
            short = hashing.CBOR_PREFIXED
            return (
                f"(_hash_v3([{self.const(self.flag_key)}, {t}]) "
                f"if ({t} := ctx.get('targetingKey')).__class__ is str and {t} else None)"
                if self.sub
                else f"((_mm({by_len}[len({b})] + {b}) if len({b} := {t}.encode()) < {short} "
                f"else _mm({prefix} + _ctext({t}))) "
                f"if ({t} := ctx.get('targetingKey')).__class__ is str and {t} else None)"
            )
        by_src = self.value(by, d)[0]
        t = self.temp()
        return f"(None if ({t} := {by_src}).__class__ is list else _hash_v3({t}))"

    def op_fractional(self, args: list[Any], d: int) -> tuple[str, str]:
        if not args:
            raise _Unsupported("fractional needs at least one bucket")
        by, buckets, literal = fraction_parts(args)
        h = self._hash_src(by, d)
        if literal:
            parsed = _parse_buckets(buckets)
            if parsed is None:
                return "None", "any"
            names, bounds, total = parsed
            t = self.temp()
            return (
                f"(None if ({t} := {h}) is None else "
                f"{self.const(tuple(names))}"
                f"[_bisect({self.const(hashing.thresholds(bounds, total))}, {t})])"
            ), "any"
        bsrc = "[" + ", ".join(self.value(b, d)[0] for b in buckets) + "]"
        return f"_pick_bucket({h}, {bsrc})", "any"

    # statements: the rule body returns outcome numbers ------------------------------------

    def outcome_stmts(self, node: Any, indent: str, depth: int = 0) -> list[str]:
        if isinstance(node, dict) and len(node) == 1 and id(node) not in self.shared:
            op, raw_args = next(iter(node.items()))
            args = self._args(raw_args)
            if op in ("if", "?:", "fractional"):
                self.charge()
            if op in ("if", "?:") and len(args) >= 2 and depth < MAX_RULE_DEPTH:
                lines: list[str] = []
                i = 0
                while i + 1 < len(args):
                    lines.append(f"{indent}if {self.test(args[i], depth + 1)}:")
                    lines.extend(self.outcome_stmts(args[i + 1], indent + "    ", depth + 1))
                    i += 2
                rest = args[i] if i < len(args) else None
                lines.extend(self.outcome_stmts(rest, indent, depth + 1))
                return lines
            if op == "fractional" and args:
                by, buckets, literal = fraction_parts(args)
                parsed = _parse_buckets(buckets) if literal else None
                if parsed is not None:
                    names, bounds, total = parsed
                    outs = tuple(self.out(self.outcome_of(n)) for n in names)
                    t = self.temp()
                    none_out = self.out(self.outcome_of(None))
                    if (
                        by is _IMPLICIT
                        and self.scheme is Scheme.V3
                        and not self.sub
                        and "_v3choose" in _RUNTIME
                    ):
                        # One C call: hash, compare with the thresholds, pick the outcome.
                        limits = hashing.thresholds(bounds, total)
                        prefix = self.const(hashing.v3_pair_prefix(self.flag_key))
                        packed = self.const(struct.pack(f"<{len(limits)}Q", *limits))
                        self.prelude.append(f"{t} = ({', '.join(outs)},)")
                        return [
                            f"{indent}return _v3choose({prefix}, ctx, {packed}, {t}, {none_out})"
                        ]
                    lines = [
                        f"{indent}{t} = {self._hash_src(by, depth + 1)}",
                        f"{indent}if {t} is None:",
                        f"{indent}    return {none_out}",
                    ]
                    # The boundaries become hash thresholds: a request only compares.
                    limits = hashing.thresholds(bounds, total)
                    if len(limits) <= 4:
                        for limit, out in zip(limits[:-1], outs[:-1], strict=True):
                            lines.append(f"{indent}if {t} < {self.const(limit)}:")
                            lines.append(f"{indent}    return {out}")
                        lines.append(f"{indent}return {outs[-1]}")
                    else:
                        lines.append(
                            f"{indent}return ({', '.join(outs)},)"
                            f"[_bisect({self.const(tuple(limits))}, {t})]"
                        )
                    return lines
        if _is_const(node) and not isinstance(node, list | dict):
            return [f"{indent}return {self.out(self.outcome_of(node))}"]
        src, _ = self.value(node, depth)
        return [f"{indent}return _outcome({src})"]


# Operators test() writes as Python conditions itself (the others go through value()).
_TEST_FORMS = frozenset({"and", "or", "!", "!!", "if", "?:", "starts_with", "ends_with"})


class _Implicit:
    pass


_IMPLICIT = _Implicit()


def fraction_parts(args: list[Any]) -> tuple[Any, list[Any], bool]:
    """fractional's arguments: (bucketing expression or _IMPLICIT, bucket nodes, whether the
    buckets are literal). No arguments: (None, [], True)."""
    first = args[0] if args else None
    if isinstance(first, list):
        by: Any = _IMPLICIT
        buckets = args
    else:
        by, buckets = first, args[1:]
    literal = all(
        isinstance(b, list) and 1 <= len(b) <= 2 and not _has_operator(b) for b in buckets
    )
    return by, buckets, literal


def _has_operator(node: Any) -> bool:
    if isinstance(node, dict):
        return True
    if isinstance(node, list):
        return any(_has_operator(n) for n in node)
    return False


def _is_const(node: Any) -> bool:
    return not _has_operator(node)


def _with_flagd(ctx: Mapping[str, Any], now: int, flag_key: str) -> dict[str, Any]:
    data = dict(ctx)
    data["$flagd"] = {"flagKey": flag_key, "timestamp": now}
    return data


_RUNTIME["_with_flagd"] = _with_flagd

_OPS: dict[str, Callable[[_Gen, list[Any], int], tuple[str, str]]] = {
    "var": _Gen.op_var,
    "missing": _Gen.op_missing,
    "missing_some": _Gen.op_missing_some,
    "if": _Gen.op_if,
    "?:": _Gen.op_if,
    "==": _Gen.op_eq,
    "!=": _Gen.op_ne,
    "===": _Gen.op_strict_eq,
    "!==": _Gen.op_strict_ne,
    "<": _Gen.op_lt,
    "<=": _Gen.op_le,
    ">": _Gen.op_gt,
    ">=": _Gen.op_ge,
    "!": _Gen.op_not,
    "!!": _Gen.op_notnot,
    "and": _Gen.op_and,
    "or": _Gen.op_or,
    "+": _Gen.op_add,
    "*": _Gen.op_mul,
    "-": _Gen.op_sub,
    "/": _Gen.op_div,
    "%": _Gen.op_mod,
    "min": _Gen.op_min,
    "max": _Gen.op_max,
    "cat": _Gen.op_cat,
    "substr": _Gen.op_substr,
    "merge": _Gen.op_merge,
    "in": _Gen.op_in,
    "map": _Gen.op_map,
    "filter": _Gen.op_filter,
    "all": _Gen.op_all,
    "some": _Gen.op_some,
    "none": _Gen.op_none,
    "reduce": _Gen.op_reduce,
    "starts_with": _Gen.op_starts_with,
    "ends_with": _Gen.op_ends_with,
    "sem_ver": _Gen.op_sem_ver,
    "fractional": _Gen.op_fractional,
}
assert set(_OPS) == OPERATORS


@dataclass(frozen=True, slots=True)
class RuleCode:
    """A compiled rule: ``rule(ctx, now) -> outcome number``, and ``bind(table)``, which
    runs the same code object with each outcome name bound to ``table[outcome]``, giving
    ``resolver(ctx, now) -> table entry`` with no indexing step on the request path."""

    rule: Rule
    problem: str | None
    bind: Callable[[Sequence[Any]], Callable[[Mapping[str, Any], int], Any]] | None


def compile_rule(
    flag: FlagDefinition,
    scheme: Scheme,
    variant_index: Mapping[str, int],
    max_cost: int = DEFAULT_LIMITS.max_rule_cost,
) -> RuleCode:
    """Compile a flag's targeting.

    Outcome numbers: ``i < n`` is TARGETING_MATCH of variant i; ``n + SLOT_*`` the rest.
    ``problem`` says why, when the rule always answers PARSE_ERROR. ``max_cost`` bounds
    the operations generated (a rule over it answers PARSE_ERROR).
    """
    n = len(variant_index)
    default_out = n + SLOT_DEFAULT
    general_out = n + SLOT_GENERAL
    parse_out = n + SLOT_PARSE_ERROR

    def outcome_of(result: Any) -> int:
        name = variant_for(result)
        if name is None:
            return default_out
        return variant_index.get(name, general_out)

    if flag.rule_problem is not None:
        return RuleCode(_constant_rule(parse_out), flag.rule_problem, None)
    # Only a rule that uses evaluators twice or more can reach a node twice.
    shared = _reached_twice(flag.targeting) if flag.shares_refs else frozenset()
    gen = _Gen(flag.key, scheme, outcome_of, shared=shared, budget=max_cost)
    try:
        body = gen.outcome_stmts(flag.targeting, "        ")
    except _Unsupported as exc:
        return RuleCode(_constant_rule(parse_out), str(exc), None)
    except RecursionError:
        return RuleCode(_constant_rule(parse_out), "rule too deeply nested", None)
    n_outcomes = n + N_SLOTS
    params = [f"c{i}" for i in range(len(gen.consts))]
    params += [f"o{i}" for i in range(n_outcomes)]
    params += ["_general", "_outcome"]
    inner = (
        "".join(f"{line}\n" for line in gen.prelude)
        + "".join(gen.helpers)
        + (
            "def rule(ctx, now):\n    try:\n"
            + "\n".join(body)
            + "\n    except _Exception:\n        return _general\n"
            + "return rule\n"
        )
    )
    source = f"def make({', '.join(params)}):\n" + "".join(
        f"    {line}\n" if line else "\n" for line in inner.splitlines()
    )
    try:
        make = _factory_for(source)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        problem = f"rule cannot be compiled ({type(exc).__name__})"
        return RuleCode(_constant_rule(parse_out), problem, None)
    consts = tuple(gen.consts)

    def instantiate(table: Sequence[Any], outcome: Callable[[Any], Any]) -> Any:
        # The source holds no definition text: every value arrives as an argument here.
        return make(*consts, *table[:n_outcomes], table[general_out], outcome)

    def bind(table: Sequence[Any]) -> Callable[[Mapping[str, Any], int], Any]:
        resolver: Callable[[Mapping[str, Any], int], Any] = instantiate(
            table, lambda result: table[outcome_of(result)]
        )
        return resolver

    rule: Rule = instantiate(range(n_outcomes), outcome_of)
    return RuleCode(rule, None, bind)


def _reached_twice(root: Any) -> frozenset[int]:
    """Ids of the operator nodes a rule reaches by more than one path (an evaluator its
    $refs share). The walk never enters a node twice, so it costs the rule as written."""
    seen: set[int] = set()
    twice: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                if isinstance(node, dict) and len(node) == 1:
                    twice.add(id(node))
                continue
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
    return frozenset(twice)


def _constant_rule(outcome: int) -> Rule:
    def rule(ctx: Mapping[str, Any], now: int) -> int:
        return outcome

    return rule
