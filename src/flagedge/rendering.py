"""The served state as flagd JSON: what in-process providers receive from flagd's sync service.

    Snapshot.flags (definitions with ops overrides applied) ──render_flag──► one flag's JSON
        no override        the definition as flagd sends it: state, defaultVariant ("" when
                           none), variants, targeting ($refs substituted; omitted when
                           empty), source, metadata (flag-set metadata merged in, the flag's
                           own winning; the document gets no top-level metadata)
        KILL to variant v  ENABLED, defaultVariant v, no targeting
        KILL, no variant   DISABLED
        ROLLOUT p% to v    ENABLED, targeting
                             {"if": [{"==": [{"fractional": [["in", w], ["out", 10000 - w]]},
                                             "in"]},
                                     v,
                                     the definition's targeting, or null]}
                           with w = compiler.rollout_weight(p) basis points

The rollout's ``fractional`` buckets over the implicit key, and ``(h * 10000) >> 32 < w`` is
exactly the test compiler.apply_override makes with ``hashing.thresholds``; an evaluator that
finds no usable targeting key gets null, so ``==`` is false and the definition decides, as on
the edge (a context without a targeting key is never in a rollout). ``if`` evaluates only the
branch it takes, so a definition whose targeting fails still fails only outside the rollout.

An evaluator fed this JSON answers every context with the value and variant the edge answers,
provided it buckets with the snapshot's scheme (README, "In-process providers"). Three reasons
cannot be written in flagd JSON and differ:

    case                                        edge                in-process evaluator
    KILL to a variant                           DISABLED, value     STATIC, same value
    ROLLOUT, outside it, no targeting defined   STATIC              DEFAULT, same value
    ROLLOUT on a DISABLED flag, outside it      DISABLED, no value  DEFAULT, no value

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .compiler import ROLLOUT_SCALE, CompiledFlag, rollout_weight
from .model import FlagState, Override, OverrideKind

# The two bucket names of a rendered rollout: only compared with each other, never served.
IN_ROLLOUT = "in"
OUT_OF_ROLLOUT = "out"


def rollout_targeting(percent: float, variant: str, otherwise: Any) -> dict[str, Any]:
    """JSON Logic that picks ``variant`` for ``percent`` of targeting keys, else ``otherwise``."""
    weight = rollout_weight(percent)
    bucket = {"fractional": [[IN_ROLLOUT, weight], [OUT_OF_ROLLOUT, ROLLOUT_SCALE - weight]]}
    return {"if": [{"==": [bucket, IN_ROLLOUT]}, variant, otherwise]}


def render_flag(flag: CompiledFlag, source: str | None) -> dict[str, Any]:
    """One flag as flagd's sync service sends it, with its ops override written in."""
    d = flag.definition
    state = d.state
    default = d.default_variant or ""
    targeting = d.targeting
    ov: Override | None = flag.override
    if ov is not None and ov.kind is OverrideKind.KILL:
        if ov.variant is None:
            state = FlagState.DISABLED
        else:
            state, default, targeting = FlagState.ENABLED, ov.variant, None
    elif ov is not None and ov.variant is not None and ov.percent is not None:
        # A rollout decides before the definition, so it applies to a disabled flag too;
        # outside it such a flag answers the caller's default (no defaultVariant).
        if state is FlagState.DISABLED:
            state, default, targeting = FlagState.ENABLED, "", None
        targeting = rollout_targeting(ov.percent, ov.variant, targeting)
    out: dict[str, Any] = {
        "state": state.value,
        "defaultVariant": default,
        "variants": d.variants,
    }
    if targeting is not None:
        out["targeting"] = targeting
    out["source"] = source or ""
    out["metadata"] = dict(flag.metadata)
    return out


def render_document(flags: Iterable[CompiledFlag], source: str | None) -> dict[str, Any]:
    """``{"flags": {key: flag}}`` for ``flags`` (in their order), as flagd's sync sends it."""
    return {"flags": {flag.key: render_flag(flag, source) for flag in flags}}
