"""Definitions: parse and validate a flagd document into FlagDefinitions. Pure.

    document (flagd JSON, as loaded)
        │  every structural problem, located by dotted JSON path (fatal: the document
        │  is refused); rule problems are soft: an unknown operator, a $ref to nothing
        │  or a cycle, a rule over a DefinitionLimits bound disable one flag, which then
        │  answers PARSE_ERROR; a fractional that can only answer null and a literal
        │  result that names no variant are reported and served as flagd would
        ▼
    Document(flags: FlagDefinition..., metadata, scheme, problems)

Nothing here mutates the input: ``$ref`` substitution builds new containers and shares
each evaluator's body (the code generator compiles a shared body once). Every walk over a
rule is iterative, with its limits checked as it goes, so a hostile document costs time in
proportion to what the limits allow, never to what it would expand into.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError, Problem
from .hashing import MAX_TOTAL_WEIGHT, Scheme
from .model import FlagState, ToggleKind, ValueKind

MAX_RULE_DEPTH = 256  # JSON levels (an operator and its argument list are two)


@dataclass(frozen=True, slots=True)
class DefinitionLimits:
    """How large a definitions document, and each flag's targeting, may be.

    A document over ``max_bytes`` is refused before it is parsed (store/file.py, and an
    edge reading Redis). A rule over one of the rule limits disables its flag (PARSE_ERROR)
    and is reported with its path, so that no rule can make a load slow or large.
    """

    max_bytes: int = 16 * 1024 * 1024
    max_rule_depth: int = MAX_RULE_DEPTH  # JSON levels, $refs expanded
    max_rule_width: int = 2_000  # arguments of one operator
    max_rule_nodes: int = 100_000  # JSON values, every $ref expanded (what evaluation walks)
    max_rule_cost: int = 20_000  # operations the code generator emits (a shared $ref once)


DEFAULT_LIMITS = DefinitionLimits()

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
    path: str = ""  # where the flag is in its document (flags.KEY or flags[i])
    shares_refs: bool = False  # targeting uses evaluators twice or more (codegen shares them)


@dataclass(frozen=True, slots=True)
class Document:
    """A validated definitions document."""

    flags: tuple[FlagDefinition, ...]
    metadata: Mapping[str, Any]
    scheme: Scheme
    problems: tuple[Problem, ...]  # non-fatal ones (a flag disabled, or a rule answering null)


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


def variant_for(result: Any) -> str | None:
    """How flagd reads a targeting result as a variant name (None: use the default)."""
    if result is None:
        return None
    if result is True:
        return "true"
    if result is False:
        return "false"
    if isinstance(result, str):
        return result
    if isinstance(result, float) and result.is_integer():
        return str(int(result))
    if isinstance(result, int | float):
        return str(result)
    return "\x00"  # never a variant name: an object or array result is a GENERAL error


# -- rules: one walk per flag, bounded as it goes -----------------------------------------


def _substitute_refs(node: Any, evaluators: Mapping[str, Any]) -> Any:
    """Replace every ``{"$ref": name}`` with the named evaluator (never mutating input).

    The evaluator's body is shared, not copied: every reference is the same object, which
    is how the code generator knows to compile it once. Called only on rules the analysis
    accepted, so the recursion is bounded by the depth limit."""
    if isinstance(node, dict):
        if len(node) == 1 and "$ref" in node and isinstance(node["$ref"], str):
            return evaluators.get(node["$ref"], node)
        return {k: _substitute_refs(v, evaluators) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_refs(v, evaluators) for v in node]
    return node


def _ref_name(node: Any) -> str | None:
    if isinstance(node, dict) and len(node) == 1 and isinstance(node.get("$ref"), str):
        name: str = node["$ref"]
        return name
    return None


@dataclass(frozen=True, slots=True)
class _Summary:
    """One rule (or evaluator body) as written: how deep and how large it is with its
    $refs expanded, and the first reason it cannot compile, at a path relative to it."""

    depth: int
    nodes: int
    problem: tuple[str, str] | None = None  # (relative path, message)
    warnings: tuple[tuple[str, str], ...] = ()
    refs: int = 0  # $refs to evaluators (two or more: the code generator shares them)


class _Rules:
    """Analyses the rules of one document against its evaluators and the limits. Each
    evaluator is walked once, however many rules refer to it."""

    def __init__(self, evaluators: Mapping[str, Any], limits: DefinitionLimits) -> None:
        self.evaluators = evaluators
        self.limits = limits
        self._bodies: dict[str, _Summary] = {}
        self._refs: dict[str, list[str]] = {}

    def evaluator(self, name: str) -> _Summary:
        found = self._bodies.get(name)
        if found is None:
            found = self._bodies[name] = self.walk(self.evaluators[name], owner=name)
        return found

    def _refs_of(self, name: str) -> list[str]:
        refs = self._refs.get(name)
        if refs is None:
            found = _direct_refs(self.evaluators[name], self.limits.max_rule_nodes)
            refs = self._refs[name] = [r for r in found if r in self.evaluators]
        return refs

    def _cycle(self, start: str, first: str) -> list[str] | None:
        """A chain of nested $refs from ``start`` through ``first`` that comes back to a
        name on it (depth first, iterative), or None when every chain ends."""
        if first == start:
            return [start, start]
        path = [start, first]
        pending = [iter(self._refs_of(first))]
        finished: set[str] = set()
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                pending.pop()
                finished.add(path.pop())
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in finished:
                path.append(nxt)
                pending.append(iter(self._refs_of(nxt)))
        return None

    def walk(self, root: Any, owner: str | None = None) -> _Summary:
        """Depth, expanded size and the first problem of ``root``, in one iterative walk.

        ``owner`` names the evaluator being walked: a $ref inside it is a nested reference
        (flagd does not resolve those), reported as a cycle when it leads back. Runs for
        every rule of every load, so it is written for speed: only containers are pushed,
        and a path is spelled out only for a problem."""
        limits = self.limits
        max_depth, max_nodes, max_width = (
            limits.max_rule_depth,
            limits.max_rule_nodes,
            limits.max_rule_width,
        )
        evaluators = self.evaluators
        # Each entry: (container, depth, parent entry, key or operator, list index or -1).
        entries: list[tuple[Any, int, int, Any, int]] = [(root, 1, -1, None, -1)]
        stack = [0]
        nodes = deepest = refs = 0
        warnings: list[tuple[str, str]] = []

        def path(i: int) -> str:
            steps = []
            while i > 0:
                _node, _depth, parent, key, index = entries[i]
                steps.append(f"[{index}]" if index >= 0 else "")
                if key is not None:
                    steps.append(f".{key}")
                i = parent
            return "".join(reversed(steps))

        def fail(i: int, message: str) -> _Summary:
            return _Summary(deepest, nodes, (path(i), message), tuple(warnings))

        while stack:
            i = stack.pop()
            node, depth, _parent, _key, _index = entries[i]
            nodes += 1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    return fail(i, f"rule nested deeper than {max_depth} levels")
            if isinstance(node, list):
                if len(node) > max_nodes:
                    return fail(i, f"a list of {len(node)} values, over the limit of {max_nodes}")
                children: Any = enumerate(node)
                key: Any = None
                depth += 1
            elif len(node) != 1:  # an object of data: its values are walked as written
                children, key, depth = node.items(), None, depth + 1
            else:
                op, args = next(iter(node.items()))
                if op == "$ref" and isinstance(args, str) and args in evaluators:
                    if owner is not None:
                        chain = self._cycle(owner, args)
                        if chain is not None:
                            return fail(i, f"$ref cycle: {' -> '.join(quote(n) for n in chain)}")
                        return fail(
                            i,
                            f"nested $ref to evaluator {quote(args)} inside evaluator "
                            f"{quote(owner)} (flagd does not resolve nested $refs)",
                        )
                    body = self.evaluator(args)
                    if body.problem is not None:
                        where, message = body.problem
                        return fail(
                            i, f"$ref {quote(args)}: {message} at $evaluators.{args}{where}"
                        )
                    if body.warnings and len(warnings) < 20:
                        at = path(i)
                        warnings += [
                            (at, f"{m} at $evaluators.{args}{w}") for w, m in body.warnings
                        ]
                    refs += 1
                    nodes += body.nodes - 1
                    deepest = max(deepest, depth - 1 + body.depth)
                    if deepest > max_depth:
                        return fail(i, f"rule nested deeper than {max_depth} levels")
                    continue
                if op == "$ref":
                    return fail(i, f"$ref to a missing evaluator {quote(args)}")
                if op not in OPERATORS:
                    return fail(i, f"unknown operator {quote(op)}")
                if isinstance(args, list):
                    if len(args) > max_width:
                        return fail(
                            i,
                            f"{quote(op)} has {len(args)} arguments, over the limit of "
                            f"{max_width} (max-rule-width)",
                        )
                    if op == "fractional":
                        problem = _fractional(args, warnings, f"{path(i)}.{op}")
                        if problem is not None:
                            return fail(i, problem)
                    nodes += 1  # the argument list itself
                    children, key, depth = enumerate(args), op, depth + 2
                else:
                    if op == "fractional":
                        return fail(i, "fractional needs at least one bucket")
                    children, key, depth = ((-1, args),), op, depth + 1
            pushed = len(entries)
            for k, child in children:
                if isinstance(child, dict | list):
                    if key is None and not isinstance(k, int):  # a data object's key
                        entries.append((child, depth, i, k, -1))
                    else:
                        entries.append((child, depth, i, key, k))
                else:
                    nodes += 1  # a scalar: counted, never pushed
                    if depth > deepest:
                        deepest = depth
            stack.extend(range(len(entries) - 1, pushed - 1, -1))
            if deepest > max_depth:  # a scalar child one level too deep
                return fail(i, f"rule nested deeper than {max_depth} levels")
            if nodes > max_nodes:
                return fail(
                    0,
                    f"rule has more than {max_nodes} values with its $refs expanded "
                    "(max-rule-nodes)",
                )
        return _Summary(deepest, nodes, None, tuple(warnings), refs)

    def results(self, root: Any, variants: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Literal results of a rule (its if/else branches, fractional bucket names, through
        $refs) that name no variant: the flag answers GENERAL when targeting picks one."""
        out: list[tuple[str, str]] = []
        stack: list[tuple[Any, str, str]] = [(root, "", "")]
        while stack and len(out) < 20:
            node, where, via = stack.pop()
            name = _ref_name(node)
            if name is not None and name in self.evaluators:
                stack.append((self.evaluators[name], where, f" (from $evaluators.{name})"))
                continue
            if isinstance(node, dict) and len(node) == 1:
                op, args = next(iter(node.items()))
                args = args if isinstance(args, list) else [args]
                if op in ("if", "?:"):
                    picks = list(range(1, len(args), 2))
                    if len(args) % 2 == 1:
                        picks.append(len(args) - 1)
                    stack.extend((args[k], f"{where}.{op}[{k}]", via) for k in reversed(picks))
                elif op == "fractional" and args:
                    first = 0 if isinstance(args[0], list) else 1
                    for k in range(first, len(args)):
                        bucket = args[k]
                        if (
                            isinstance(bucket, list)
                            and bucket
                            and not isinstance(bucket[0], dict | list)
                        ):
                            stack.append((bucket[0], f"{where}.fractional[{k}][0]", via))
                continue
            if isinstance(node, dict | list):
                what = "an object" if isinstance(node, dict) else "an array"
                out.append((where, f"{what} is never a variant: the flag answers GENERAL{via}"))
                continue
            chosen = variant_for(node)
            if chosen is not None and chosen not in variants:
                out.append(
                    (
                        where,
                        f"{quote(node)} is not a variant ({', '.join(variants)}): the flag answers "
                        f"GENERAL when targeting picks it{via}",
                    )
                )
        return out


def _direct_refs(node: Any, budget: int) -> list[str]:
    """The $ref names directly inside ``node`` (a bounded walk)."""
    out: list[str] = []
    stack = [node]
    while stack and budget > 0:
        budget -= 1
        n = stack.pop()
        name = _ref_name(n)
        if name is not None:
            out.append(name)
        elif isinstance(n, dict):
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
    return out


def _fractional(args: list[Any], warnings: list[tuple[str, str]], where: str) -> str | None:
    """Check a fractional's literal buckets. Returns why it cannot compile (no buckets);
    appends to ``warnings`` what makes it answer null (the default variant) for everyone,
    as flagd would: weights that are not whole numbers, negative, or sum to 0 or too much."""
    if not args:
        return "fractional needs at least one bucket"
    first = 0 if isinstance(args[0], list) else 1
    if first >= len(args):
        return "fractional needs at least one bucket"
    total = 0
    known = True
    for k in range(first, len(args)):
        bucket = args[k]
        at = f"{where}[{k}]"
        if isinstance(bucket, dict):
            known = False  # computed when evaluated
            continue
        if not isinstance(bucket, list) or not 1 <= len(bucket) <= 2:
            warnings.append(
                (
                    at,
                    f"a bucket is [variant] or [variant, weight], not {quote(bucket)}: "
                    "fractional answers null (the default variant)",
                )
            )
            known = False
            continue
        if len(bucket) == 1:
            total += 1
            continue
        weight = bucket[1]
        if isinstance(weight, dict | list):
            known = False
            continue
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            warnings.append(
                (
                    f"{at}[1]",
                    f"weight {quote(weight)} is not a number: fractional answers "
                    "null (the default variant)",
                )
            )
            known = False
        elif isinstance(weight, float) and not weight.is_integer():
            warnings.append(
                (
                    f"{at}[1]",
                    f"weight {quote(weight)} is not a whole number: fractional "
                    "answers null (the default variant)",
                )
            )
            known = False
        elif weight < 0:
            warnings.append((f"{at}[1]", f"weight {quote(weight)} is negative: it counts as 0"))
        else:
            total += int(weight)
    if known and total <= 0:
        warnings.append(
            (where, "the weights sum to 0: fractional answers null (the default variant)")
        )
    elif known and total > MAX_TOTAL_WEIGHT:
        warnings.append(
            (
                where,
                f"the weights sum to {total}, over {MAX_TOTAL_WEIGHT}: fractional answers "
                "null (the default variant)",
            )
        )
    return None


def _bad_text(value: str) -> bool:
    """True for text UTF-8 cannot carry (a lone surrogate, which YAML's escapes allow)."""
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_problems(document: Any, limit: int = 20) -> list[Problem]:
    """Keys and strings no wire can carry (lone surrogates), by path: each would make every
    answer that includes it fail. JSON parsers refuse them; YAML's "\\ud800" does not."""
    out: list[Problem] = []
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack and len(out) < limit:
        node, where = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                at = f"{where}.{k}" if where else (str(k) or '""')
                if isinstance(k, str) and _bad_text(k):
                    out.append(
                        Problem(
                            at.encode("utf-8", "backslashreplace").decode(),
                            "the key is not valid Unicode text (a lone surrogate)",
                        )
                    )
                    continue
                stack.append((v, at))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, str) and _bad_text(node):
            out.append(
                Problem(
                    where.encode("utf-8", "backslashreplace").decode(),
                    "the text is not valid Unicode (a lone surrogate)",
                )
            )
    return out


def parse_document(
    doc: Any, *, scheme: Scheme | str = Scheme.V3, limits: DefinitionLimits = DEFAULT_LIMITS
) -> Document:
    """Validate a flagd definitions document; raise DefinitionError listing every problem.

    The bucketing scheme comes from ``metadata.fractional`` ("v2"/"v3") when the document
    sets it, else from ``scheme``. ``limits`` bounds each rule (a rule over one disables
    its flag, reported with its path).
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
    rules = _Rules(evaluators, limits)
    for path, key, raw in entries:
        if key in seen:
            problems.append(Problem(path, f"duplicate flag key {quote(key)}"))
            continue
        seen.add(key)
        if not key:
            problems.append(Problem(path, "flag key must not be empty"))
            continue
        flag = _parse_flag(path, key, raw, set_meta, rules, problems, soft)
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
    rules: _Rules,
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
    shares_refs = False
    if targeting is not None and not isinstance(targeting, dict):
        problems.append(
            Problem(f"{path}.targeting", f"must be a JSON Logic object, not {_describe(targeting)}")
        )
    elif targeting:
        where = f"{path}.targeting"
        summary = rules.walk(targeting)
        if summary.problem is not None:
            at, rule_problem = summary.problem
            soft.append(Problem(where + at, rule_problem, fatal=False))
        else:
            found = list(summary.warnings)
            if isinstance(variants, dict) and variants:
                found += rules.results(targeting, variants)
            soft.extend(Problem(where + at, message, fatal=False) for at, message in found[:20])
            if summary.refs:
                targeting = _substitute_refs(targeting, rules.evaluators)
                shares_refs = summary.refs > 1
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
        path=path,
        shares_refs=shares_refs,
    )
