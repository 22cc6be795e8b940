"""Compiled flags: a FlagDefinition becomes a CompiledFlag whose every answer is prebuilt.

    FlagDefinition ──compile_flag──► CompiledFlag
        outcomes[i]   the Resolution for outcome i: TARGETING_MATCH of variant i (i < n),
                      then DEFAULT, STATIC, DISABLED, PARSE_ERROR, GENERAL (codegen.SLOT_*)
        rule          codegen's rule(ctx, now) -> outcome (None needed when ``fixed`` >= 0)
        resolver      the same code returning the Resolution itself (no indexing step)
        answer        outcomes[fixed] when no rule needs to run
    CompiledFlag + Override ──apply_override──► a wrapper that decides first; no recompiling

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .codegen import (
    N_SLOTS,
    SLOT_DEFAULT,
    SLOT_DISABLED,
    SLOT_GENERAL,
    SLOT_PARSE_ERROR,
    SLOT_STATIC,
    Rule,
    compile_rule,
)
from .definitions import DEFAULT_LIMITS, FlagDefinition, quote
from .errors import Problem
from .hashing import Scheme, implicit_hasher, thresholds
from .model import (
    ACCEPTS,
    REASON_CODES,
    ErrorCode,
    ErrorCodeNumber,
    FlagState,
    FlagType,
    Metadata,
    Override,
    OverrideKind,
    Reason,
    ReasonCode,
    Resolution,
    ValueKind,
)

GENERAL_MESSAGE = "targeting resolved to a value that names no variant"

# A rollout's share is counted in basis points of ROLLOUT_SCALE: 12.5% rolls out to the bucket
# numbers below 1,250 of 10,000. rendering.py writes the same weights into flagd JSON.
ROLLOUT_SCALE = 10_000


def rollout_weight(percent: float) -> int:
    """The bucket numbers (of ROLLOUT_SCALE) that a rollout of ``percent`` covers."""
    return round(percent * 100)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledFlag:
    """A flag ready to evaluate. ``outcomes[i]`` is the Resolution for outcome i."""

    key: str
    kind: ValueKind
    state: FlagState
    variants: Mapping[str, Any]
    variant_names: tuple[str, ...]
    default_variant: str | None
    metadata: Metadata
    definition: FlagDefinition
    rule: Rule
    fixed: int  # the outcome when no rule needs to run, else -1
    outcomes: tuple[Resolution, ...]
    out_variant: tuple[int, ...]  # variant index per outcome, -1 for none
    out_reason: bytes  # ReasonCode per outcome
    out_error: bytes  # ErrorCodeNumber per outcome
    rule_problem: str | None = None
    override: Override | None = None
    # rule's twin that returns the Resolution itself (None when ``fixed`` decides)
    resolver: Callable[[Mapping[str, Any], int], Resolution] | None = None
    answer: Resolution | None = None  # outcomes[fixed] when no rule needs to run
    _typed: dict[FlagType, tuple[Resolution, ...]] = field(default_factory=dict, repr=False)

    @property
    def has_targeting(self) -> bool:
        return self.definition.targeting is not None

    def typed(self, flag_type: FlagType) -> tuple[Resolution, ...]:
        """The outcome table as seen by a caller asking for ``flag_type`` (memoised)."""
        table = self._typed.get(flag_type)
        if table is None:
            table = self._typed[flag_type] = _typed_table(self, flag_type)
        return table

    def resolve(self, context: Mapping[str, Any], now: int) -> Resolution:
        fixed = self.fixed
        return self.outcomes[fixed if fixed >= 0 else self.rule(context, now)]


def _typed_table(flag: CompiledFlag, flag_type: FlagType) -> tuple[Resolution, ...]:
    if ACCEPTS[flag_type] is not flag.kind:
        mismatch = Resolution(
            flag.key,
            None,
            None,
            Reason.ERROR,
            ErrorCode.TYPE_MISMATCH,
            f"flag {quote(flag.key)} has {flag.kind.value} variants, not {flag_type.value}",
            flag.metadata,
        )
        # No value, no type to check: a disabled flag or a missing default is not a mismatch.
        return tuple(r if r.variant is None else mismatch for r in flag.outcomes)
    if flag_type is FlagType.INTEGER:
        # flagd evaluates ResolveInt as float64 and truncates: 3.14 -> 3, no error.
        return tuple(
            _with_value(r, int(r.value)) if isinstance(r.value, float) else r for r in flag.outcomes
        )
    if flag_type is FlagType.FLOAT:
        return tuple(
            _with_value(r, float(r.value)) if isinstance(r.value, int) else r for r in flag.outcomes
        )
    return flag.outcomes


def _with_value(r: Resolution, value: Any) -> Resolution:
    return Resolution(r.key, value, r.variant, r.reason, r.error_code, r.error_message, r.metadata)


def compile_flag(
    d: FlagDefinition, scheme: Scheme, max_cost: int = DEFAULT_LIMITS.max_rule_cost
) -> CompiledFlag:
    """Compile one flag; ``max_cost`` is its rule's compile budget (codegen.compile_rule)."""
    names = tuple(d.variants)
    index = {name: i for i, name in enumerate(names)}
    meta: Metadata = MappingProxyType(dict(d.metadata))
    key = d.key
    outcomes: list[Resolution] = [
        Resolution(key, d.variants[n], n, Reason.TARGETING_MATCH, metadata=meta) for n in names
    ]
    dv = d.default_variant
    if dv is None:
        default = static = Resolution(key, None, None, Reason.DEFAULT, metadata=meta)
    else:
        default = Resolution(key, d.variants[dv], dv, Reason.DEFAULT, metadata=meta)
        static = Resolution(key, d.variants[dv], dv, Reason.STATIC, metadata=meta)
    slots = [Resolution(key, None, None, Reason.ERROR, metadata=meta)] * N_SLOTS
    slots[SLOT_DEFAULT] = default
    slots[SLOT_STATIC] = static
    slots[SLOT_DISABLED] = Resolution(key, None, None, Reason.DISABLED, metadata=meta)
    n = len(names)
    rule: Rule
    problem: str | None
    if d.state is FlagState.DISABLED:
        rule, problem, fixed = _never, None, n + SLOT_DISABLED
    elif d.targeting is None:
        rule, problem, fixed = _never, None, n + SLOT_STATIC
    else:
        code = compile_rule(d, scheme, index, max_cost)
        rule, problem, bind = code.rule, code.problem, code.bind
        fixed = n + SLOT_PARSE_ERROR if problem is not None else -1
    slots[SLOT_PARSE_ERROR] = Resolution(
        key,
        None,
        None,
        Reason.ERROR,
        ErrorCode.PARSE_ERROR,
        f"invalid targeting: {problem}" if problem else "invalid targeting",
        meta,
    )
    slots[SLOT_GENERAL] = Resolution(
        key, None, None, Reason.ERROR, ErrorCode.GENERAL, GENERAL_MESSAGE, meta
    )
    outcomes.extend(slots)
    table = tuple(outcomes)
    resolver = bind(table) if fixed < 0 and bind is not None else None
    return _assemble(d, meta, rule, fixed, table, problem, None, resolver)


def _assemble(
    d: FlagDefinition,
    meta: Metadata,
    rule: Rule,
    fixed: int,
    outcomes: tuple[Resolution, ...],
    problem: str | None,
    override: Override | None,
    resolver: Callable[[Mapping[str, Any], int], Resolution] | None = None,
) -> CompiledFlag:
    names = tuple(d.variants)
    index = {name: i for i, name in enumerate(names)}
    return CompiledFlag(
        key=d.key,
        kind=d.kind,
        state=d.state,
        variants=MappingProxyType(dict(d.variants)),
        variant_names=names,
        default_variant=d.default_variant,
        metadata=meta,
        definition=d,
        rule=rule,
        fixed=fixed,
        outcomes=outcomes,
        out_variant=tuple(-1 if r.variant is None else index[r.variant] for r in outcomes),
        out_reason=bytes(REASON_CODES.get(r.reason, ReasonCode.ERROR) for r in outcomes),
        out_error=bytes(
            ErrorCodeNumber[r.error_code.value] if r.error_code else ErrorCodeNumber.NONE
            for r in outcomes
        ),
        rule_problem=problem,
        override=override,
        resolver=resolver,
        answer=outcomes[fixed] if fixed >= 0 else None,
    )


def _never(ctx: Mapping[str, Any], now: int) -> int:  # pragma: no cover - fixed flags skip it
    raise AssertionError("a flag with a fixed outcome has no rule to run")


def apply_override(base: CompiledFlag, ov: Override, scheme: Scheme) -> CompiledFlag:
    """Wrap a compiled flag so that an ops override decides first. No recompilation."""
    d, meta = base.definition, base.metadata
    outcomes = list(base.outcomes)
    if ov.kind is OverrideKind.KILL:
        if ov.variant is None:
            fixed = len(base.variant_names) + SLOT_DISABLED
        else:
            fixed = len(outcomes)
            outcomes.append(
                Resolution(
                    d.key, d.variants[ov.variant], ov.variant, Reason.DISABLED, metadata=meta
                )
            )
        return _assemble(d, meta, base.rule, fixed, tuple(outcomes), base.rule_problem, ov)

    assert ov.variant is not None and ov.percent is not None
    chosen = base.variant_names.index(ov.variant)
    (limit,) = thresholds((rollout_weight(ov.percent),), ROLLOUT_SCALE)
    inner_rule, inner_fixed = base.rule, base.fixed
    hash_of = implicit_hasher(scheme, d.key)

    def rollout(ctx: Mapping[str, Any], now: int) -> int:
        tk = ctx.get("targetingKey")
        if tk.__class__ is str and tk and hash_of(tk) < limit:
            return chosen
        return inner_fixed if inner_fixed >= 0 else inner_rule(ctx, now)

    # Even at 100% a context with no targeting key is evaluated as defined: the rollout
    # covers targeting keys, and 99.99% and 100% must not differ in kind.
    table = tuple(outcomes)

    def resolve(ctx: Mapping[str, Any], now: int) -> Resolution:
        return table[rollout(ctx, now)]

    return _assemble(d, meta, rollout, -1, table, base.rule_problem, ov, resolve)


def check_override(flag: CompiledFlag | None, key: str, ov: Override) -> list[Problem]:
    """Problems with an override for ``key`` (empty when it can be applied)."""
    path = f"overrides.{key}"
    out: list[Problem] = []
    if flag is None:
        return [Problem(path, f"no flag named {quote(key)}")]
    if ov.variant is not None and ov.variant not in flag.variants:
        names = ", ".join(flag.variant_names)
        out.append(Problem(f"{path}.variant", f"{quote(ov.variant)} is not a variant ({names})"))
    if ov.kind is OverrideKind.ROLLOUT:
        if ov.variant is None:
            out.append(Problem(f"{path}.variant", "a rollout names the variant it rolls out"))
        if ov.percent is None or not 0 <= ov.percent <= 100:
            out.append(Problem(f"{path}.percent", f"{quote(ov.percent)} is not a percentage 0-100"))
    return out
