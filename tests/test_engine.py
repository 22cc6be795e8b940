"""Evaluation (flagedge.engine, through Snapshot): every golden case (tests/golden/*.json)
gives flagd 0.16's answer, including those the reference evaluator is known to disagree
with and the v2 bucketing cases; evaluation never raises for data, whatever the document
and the context; and evaluate_batch and evaluate_all agree with evaluate."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flagedge.model import ErrorCode, ErrorCodeNumber, FlagType, Reason, ReasonCode, Resolution
from flagedge.snapshot import Snapshot
from tests.support.golden import DEFAULT_NOW, load_cases, same_json
from tests.support.grammar import context as flagd_context
from tests.support.grammar import document as flagd_document
from tests.support.hostile import (
    CANARY,
    FAST,
    any_context,
    build_or_problems,
    check_resolution,
    document_shaped,
)

NOW = 1_700_000_000

# -- the golden cases -----------------------------------------------------------------------

_CASES = load_cases()


def _params() -> list[Any]:
    out = []
    seen: dict[str, int] = {}
    for stem, case, doc in _CASES:
        name = f"{stem}:{case['name']}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        out.append(pytest.param(case, doc, id=name))
    return out


def evaluate_case(case: dict[str, Any], doc: dict[str, Any]) -> Resolution:
    snap = Snapshot.build(doc, fractional=case.get("fractional", "v3"))
    flag_type = FlagType(case["type"]) if case.get("type") else None
    return snap.evaluate(
        case["flag"], dict(case.get("context") or {}), case.get("now", DEFAULT_NOW), flag_type
    )


@pytest.mark.parametrize(("case", "doc"), _params())
def test_each_golden_case_gives_flagds_answer(case: dict[str, Any], doc: dict[str, Any]) -> None:
    expect = case["expect"]
    got = evaluate_case(case, doc)
    label = case["name"]
    assert str(got.reason) == expect["reason"], f"{label}: reason {got}"
    code = None if got.error_code is None else str(got.error_code)
    assert code == expect.get("errorCode"), f"{label}: errorCode {got}"
    assert got.variant == expect.get("variant"), f"{label}: variant {got}"
    assert same_json(got.value, expect.get("value")), f"{label}: value {got.value!r}"
    if case.get("type") == "float" and got.value is not None:
        assert isinstance(got.value, float), f"{label}: float value {got.value!r}"
    if case.get("type") == "integer" and got.value is not None:
        assert isinstance(got.value, int) and not isinstance(got.value, bool), label
    if "metadata" in expect:
        assert same_json(dict(got.metadata), expect["metadata"]), f"{label}: {got.metadata}"


def test_golden_cases_cover_every_file() -> None:
    stems = {stem for stem, _, _ in _CASES}
    assert len(_CASES) >= 150
    wanted = {"results_table", "fractional", "testbed_fractional_v2", "testbed_fractional_v3"}
    assert wanted <= stems


# -- never raising ------------------------------------------------------------------------


@FAST
@given(doc=document_shaped(), contexts=st.lists(any_context, min_size=1, max_size=3))
def test_built_documents_evaluate_without_raising(doc: Any, contexts: list[Any]) -> None:
    snap = build_or_problems(doc)
    if snap is None:  # refused: build_or_problems checked that every problem is located
        return
    for key in snap.keys:
        for ctx in contexts:
            check_resolution(snap.evaluate(key, ctx, NOW), key)
            for flag_type in FlagType:
                res = snap.evaluate(key, ctx, NOW, flag_type=flag_type)
                check_resolution(res, key)
    assert not CANARY.exists(), "definition text was executed"


@FAST
@given(case=flagd_document(), contexts=st.lists(any_context, min_size=1, max_size=3))
def test_grammar_rules_evaluate_hostile_contexts_without_raising(
    case: tuple[dict[str, Any], str, str], contexts: list[Any]
) -> None:
    snap = Snapshot.build(case[0])
    for key in snap.keys:
        for ctx in contexts:
            check_resolution(snap.evaluate(key, ctx, NOW), key)


# -- batch and all agree with evaluate -------------------------------------------------------

_REASON_OF = {
    ReasonCode.STATIC: Reason.STATIC,
    ReasonCode.TARGETING_MATCH: Reason.TARGETING_MATCH,
    ReasonCode.DEFAULT: Reason.DEFAULT,
    ReasonCode.DISABLED: Reason.DISABLED,
    ReasonCode.ERROR: Reason.ERROR,
}


def _snapshot_of(case: tuple[dict[str, Any], str, str]) -> Snapshot:
    return Snapshot.build(copy.deepcopy(case[0]))


@FAST
@given(case=flagd_document(), contexts=st.lists(flagd_context, min_size=1, max_size=4))
def test_evaluate_batch_agrees_with_evaluate(
    case: tuple[dict[str, Any], str, str], contexts: list[dict[str, Any]]
) -> None:
    snap = _snapshot_of(case)
    keys = [*snap.keys, "absent-flag", *reversed(snap.keys)]
    batch = snap.evaluate_batch(keys, contexts, NOW)
    assert batch.keys == tuple(keys) and batch.contexts == len(contexts)
    assert len(batch.variant_index) == len(keys) * len(contexts)
    for c, ctx in enumerate(contexts):
        for f, key in enumerate(keys):
            one = snap.evaluate(key, ctx, NOW)
            name, value, reason, error = batch.cell(c, f)
            assert name == one.variant, (key, ctx)
            assert value == one.value and type(value) is type(one.value), (key, ctx)
            assert _REASON_OF[reason] is one.reason, (key, ctx)
            code = (
                ErrorCodeNumber.NONE if one.error_code is None else ErrorCodeNumber[one.error_code]
            )
            assert error is code, (key, ctx)


@FAST
@given(case=flagd_document(), ctx=flagd_context)
def test_evaluate_all_agrees_with_evaluate(
    case: tuple[dict[str, Any], str, str], ctx: dict[str, Any]
) -> None:
    snap = _snapshot_of(case)
    every = snap.evaluate_all(ctx, NOW)
    assert [r.key for r in every] == list(snap.keys)
    assert every == [snap.evaluate(k, ctx, NOW) for k in snap.keys]
    keys = ["absent-flag", *reversed(snap.keys)]
    listed = snap.evaluate_all(ctx, NOW, keys=keys)
    assert listed == [snap.evaluate(k, ctx, NOW) for k in keys]
    assert listed[0].error_code is ErrorCode.FLAG_NOT_FOUND


def test_snapshot_is_still_importable_from_the_engine_as_the_readme_once_said() -> None:
    from flagedge import engine

    assert engine.Snapshot is Snapshot
    with pytest.raises(AttributeError):
        _ = engine.NoSuchName  # type: ignore[attr-defined]
