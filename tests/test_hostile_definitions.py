"""Hostile definitions: documents built to make validation or compilation slow or huge, and
rule problems only the compiler used to find. Each is refused, or disables only its flag,
with a path, and costs time in proportion to the limits, not to what it would expand into.

The command-line tests run the real ``flagedge`` in a child process with a memory cap, so
that a regression fails (MemoryError, or the timeout) instead of exhausting the machine."""

from __future__ import annotations

import copy
import json
import random
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flagedge.definitions import DefinitionLimits
from flagedge.errors import DefinitionError
from flagedge.model import ErrorCode, Reason
from flagedge.snapshot import Snapshot
from flagedge.store.file import load_document
from tests.support.cli import flagctl
from tests.support.redis_server import RedisServer

NOW = 1_700_000_000
BOOL = {"on": True, "off": False}


def flag(targeting: Any, variants: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "state": "ENABLED",
        "variants": variants or BOOL,
        "defaultVariant": "off",
        "targeting": targeting,
    }


def capped(
    *argv: str, memory_mb: int = 1024, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``flagedge ARGV`` in a child process that may use at most ``memory_mb`` of memory."""

    def limit() -> None:
        size = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return subprocess.run(
        [sys.executable, "-m", "flagedge", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )


def write(tmp_path: Path, doc: Any, name: str = "flags.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def problems(snap: Snapshot) -> dict[str, str]:
    return {p.path: p.message for p in snap.problems}


# -- $ref: shared, bounded, cycles named (findings 1 and 12) -----------------------------------

EVALUATOR = {"or": [{"==": [{"var": "x"}, i]} for i in range(400)]}  # about 2,000 values


def referencing(refs: int, *, inline: bool = False) -> dict[str, Any]:
    """A flag whose rule uses EVALUATOR ``refs`` times (or, ``inline``, copies of it)."""
    terms = [
        (copy.deepcopy(EVALUATOR) if inline else {"$ref": "big"})
        if k % 2 == 0
        else {"!": {"==": [{"var": "y"}, k]}}
        for k in range(2 * refs)
    ]
    return {
        "$evaluators": {"big": EVALUATOR},
        "flags": {
            "f": flag({"if": [{"and": terms}, "on", "off"]}),
            "plain": flag({"if": [{"==": [{"var": "x"}, 1]}, "on", "off"]}),
        },
    }


def test_an_evaluator_used_many_times_is_compiled_once_and_answers_as_if_copied() -> None:
    # 40 uses of an evaluator of 400 operations: inlined it would be some 40,000 operations,
    # far over this budget; shared, it is compiled once and fits.
    limits = DefinitionLimits(max_rule_cost=2_000)
    shared = Snapshot.build(referencing(40), limits=limits)
    assert shared.problems == ()
    copied = Snapshot.build(
        referencing(40, inline=True), limits=DefinitionLimits(max_rule_cost=10**6)
    )
    rng = random.Random(7)
    for _ in range(500):
        context = {"x": rng.randrange(450), "y": rng.randrange(90)}
        assert shared.evaluate("f", context, NOW) == copied.evaluate("f", context, NOW), context
    assert shared.evaluate("f", {"x": 3, "y": -1}, NOW).variant == "on"


def test_a_rule_whose_refs_expand_past_the_node_limit_disables_only_its_flag() -> None:
    snap = Snapshot.build(referencing(30), limits=DefinitionLimits(max_rule_nodes=20_000))
    assert problems(snap) == {
        "flags.f.targeting": "rule has more than 20000 values with its $refs expanded "
        "(max-rule-nodes)"
    }
    assert snap.evaluate("f", {"x": 1}, NOW).error_code is ErrorCode.PARSE_ERROR
    assert snap.evaluate("plain", {"x": 1}, NOW).variant == "on"


def test_validate_refuses_a_small_file_of_two_hundred_references_quickly_and_in_little_memory(
    tmp_path: Path,
) -> None:
    # The probe's file: a 2,000-value evaluator used 200 times (about 67 KB). Expanded and
    # compiled inline it took 30 s and 5.5 GB; the cap here is 1 GB.
    path = write(tmp_path, referencing(200))
    assert path.stat().st_size < 100_000
    out = capped("validate", "--json", str(path))
    assert out.returncode == 1, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["problems"] == [
        {
            "path": "flags.f.targeting",
            "message": "rule has more than 100000 values with its $refs expanded (max-rule-nodes)",
            "fatal": False,
        }
    ]


@pytest.mark.parametrize(
    ("evaluators", "message"),
    [
        ({"a": {"$ref": "a"}}, '$ref "a": $ref cycle: "a" -> "a" at $evaluators.a'),
        (
            {"a": {"and": [True, {"$ref": "b"}]}, "b": {"or": [{"$ref": "a"}]}},
            '$ref "a": $ref cycle: "a" -> "b" -> "a" at $evaluators.a.and[1]',
        ),
        (
            {"a": {"!": {"$ref": "b"}}, "b": {"var": "x"}},
            '$ref "a": nested $ref to evaluator "b" inside evaluator "a" (flagd does not '
            "resolve nested $refs) at $evaluators.a.!",
        ),
    ],
)
def test_a_ref_cycle_is_named_as_a_cycle_not_a_missing_evaluator(
    evaluators: dict[str, Any], message: str
) -> None:
    doc = {
        "$evaluators": evaluators,
        "flags": {"f": flag({"if": [{"$ref": "a"}, "on", "off"]}), "ok": flag(None)},
    }
    snap = Snapshot.build(doc)
    assert problems(snap) == {"flags.f.targeting.if[0]": message}
    assert snap.evaluate("f", {}, NOW).error_code is ErrorCode.PARSE_ERROR
    assert snap.evaluate("ok", {}, NOW).reason is Reason.STATIC


# -- width and compile budget (finding 3) ------------------------------------------------------


def test_validate_refuses_a_hundred_thousand_term_or_by_its_width_with_its_path(
    tmp_path: Path,
) -> None:
    # 3.5 MB that took 64 s and 1.8 GB to compile.
    terms = [{"==": [{"var": "x"}, i]} for i in range(100_000)]
    path = write(tmp_path, {"flags": {"f": flag({"if": [{"or": terms}, "on", "off"]})}})
    out = capped("validate", "--json", str(path))
    assert out.returncode == 1, out.stderr[-2000:]
    assert json.loads(out.stdout)["problems"] == [
        {
            "path": "flags.f.targeting.if[0]",
            "message": '"or" has 100000 arguments, over the limit of 2000 (max-rule-width)',
            "fatal": False,
        }
    ]


def test_a_rule_over_the_compile_budget_answers_parse_error_and_is_reported() -> None:
    terms = [{"==": [{"var": "x"}, i]} for i in range(300)]
    doc = {"flags": {"f": flag({"if": [{"or": terms}, "on", "off"]}), "g": flag(None)}}
    snap = Snapshot.build(doc, limits=DefinitionLimits(max_rule_cost=100))
    assert problems(snap) == {
        "flags.f.targeting": "rule compiles to more than 100 operations (max-rule-cost; a "
        "$ref used several times counts once)"
    }
    assert snap.evaluate("f", {"x": 3}, NOW).error_code is ErrorCode.PARSE_ERROR
    assert snap.evaluate("g", {}, NOW).reason is Reason.STATIC


def test_a_rule_limit_can_be_set_on_the_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, {"flags": {"f": flag({"in": [{"var": "x"}, ["a", "b", "c"]]})}})
    assert capped("validate", str(path)).returncode == 0
    out = capped("validate", "--max-rule-nodes", "5", str(path))
    assert out.returncode == 1
    assert "flags.f.targeting: rule has more than 5 values" in out.stdout


# -- YAML aliases and text (findings 2 and 6) --------------------------------------------------

BOMB = "\n".join(
    ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    + [
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    + ["flags: {f: {state: ENABLED, variants: {'on': true}, defaultVariant: 'on'}}", "z: *i"]
)


def test_a_yaml_alias_bomb_is_refused_with_the_anchor_position(tmp_path: Path) -> None:
    path = write(tmp_path, BOMB, "bomb.yaml")
    assert path.stat().st_size < 600  # 554 bytes that took 2.2 GB
    out = capped("validate", "--json", str(path), memory_mb=512)
    assert out.returncode == 1, out.stderr[-2000:]
    (problem,) = json.loads(out.stdout)["problems"]
    assert problem["fatal"] is True
    assert problem["message"].startswith("YAML aliases expand the document to ")
    assert "the node anchored at line 9, column 4" in problem["message"]


def test_yaml_that_shares_variants_through_an_alias_still_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "shared: &bools {'on': true, 'off': false}\n"
        "flags:\n"
        "  a: {state: ENABLED, variants: *bools, defaultVariant: 'on'}\n"
        "  b: {state: ENABLED, variants: *bools, defaultVariant: 'off'}\n",
        "flags.yaml",
    )
    snap = Snapshot.build(load_document(path))
    assert snap.evaluate("b", {}, NOW).value is False


def test_a_yaml_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "loop: &l [1, *l]\nflags: {}\n", "loop.yaml")
    with pytest.raises(DefinitionError) as caught:
        load_document(path)
    assert (
        str(caught.value.problems[0]) == "line 1, column 7: a YAML alias refers to its own anchor"
    )


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ('flags:\n  "k\\ud800": {state: ENABLED, variants: {"on": true}}\n', "flags.k\\ud800"),
        (
            'flags:\n  k: {state: ENABLED, variants: {"on": "x\\udc00y"}, defaultVariant: "on"}\n',
            "flags.k.variants.on",
        ),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_with_its_path(
    tmp_path: Path, yaml_text: str, path: str
) -> None:
    file = write(tmp_path, yaml_text, "flags.yaml")
    out = capped("validate", "--json", str(file))
    assert out.returncode == 1
    (problem,) = json.loads(out.stdout)["problems"]
    assert problem["path"] == path and "lone surrogate" in problem["message"]
    assert problem["fatal"] is True


def test_push_refuses_text_with_a_lone_surrogate_without_a_traceback(tmp_path: Path) -> None:
    file = write(
        tmp_path, 'flags:\n  "k\\ud800": {state: ENABLED, variants: {"on": true}}\n', "f.yaml"
    )
    redis = RedisServer(tmp_path / "redis").start()
    try:
        code, _, err = flagctl("push", str(file), "--redis", redis.url, "--env", "hostile")
        assert code == 2 and "nothing written" in err and "lone surrogate" in err
        assert "Traceback" not in err
        assert redis.client().get("flagedge:hostile:version") is None
    finally:
        redis.kill()


# -- problems only the compiler used to find (finding 9) ---------------------------------------


@pytest.mark.parametrize(
    ("targeting", "where", "needle", "answer"),
    [
        (
            {"fractional": []},
            "flags.f.targeting",
            "fractional needs at least one bucket",
            "PARSE_ERROR",
        ),
        (
            {"fractional": [{"var": "email"}]},
            "flags.f.targeting",
            "fractional needs at least one bucket",
            "PARSE_ERROR",
        ),
        (
            {"fractional": [["on", 0], ["off", 0]]},
            "flags.f.targeting.fractional",
            "sum to 0",
            "off",
        ),
        (
            {"fractional": [["on", -5], ["off", 5]]},
            "flags.f.targeting.fractional[0][1]",
            "negative",
            None,
        ),
        (
            {"fractional": [["on", 2.5], ["off", 5]]},
            "flags.f.targeting.fractional[0][1]",
            "not a whole number",
            "off",
        ),
        (
            {"fractional": [["on", "50"], ["off", 50]]},
            "flags.f.targeting.fractional[0][1]",
            "not a number",
            "off",
        ),
        (
            {"fractional": [["on", 50], ["nope", 50]]},
            "flags.f.targeting.fractional[1][0]",
            '"nope" is not a variant',
            None,
        ),
        (
            {"if": [{"var": "x"}, "nope", "off"]},
            "flags.f.targeting.if[1]",
            '"nope" is not a variant',
            None,
        ),
    ],
)
def test_validate_reports_every_problem_the_compiler_finds_with_its_path(
    tmp_path: Path, targeting: Any, where: str, needle: str, answer: str | None
) -> None:
    doc = {"flags": {"f": flag(targeting), "fine": flag(None)}}
    out = capped("validate", "--json", str(write(tmp_path, doc)))
    assert out.returncode == 1, out.stdout
    found = {p["path"]: p for p in json.loads(out.stdout)["problems"]}
    assert needle in found[where]["message"], found
    assert found[where]["fatal"] is False
    # What the flag answers is unchanged: flagd's answer for such a rule.
    snap = Snapshot.build(doc)
    res = snap.evaluate("f", {"targetingKey": "u1", "x": True}, NOW)
    if answer == "PARSE_ERROR":
        assert res.error_code is ErrorCode.PARSE_ERROR
    elif answer is not None:
        assert (res.variant, res.reason) == (answer, Reason.DEFAULT)
    assert snap.evaluate("fine", {}, NOW).reason is Reason.STATIC


def test_push_refuses_a_rule_the_compiler_finds_a_problem_in(tmp_path: Path) -> None:
    doc = {"flags": {"f": flag({"fractional": [["on", 50], ["nope", 50]]})}}
    redis = RedisServer(tmp_path / "redis").start()
    try:
        code, _, err = flagctl(
            "push", str(write(tmp_path, doc)), "--redis", redis.url, "--env", "e"
        )
        assert code == 2, err
        assert "flags.f.targeting.fractional[1][0]" in err and "nothing written" in err
        assert redis.client().get("flagedge:e:version") is None
    finally:
        redis.kill()


# -- size (the file source, validate and push) ------------------------------------------------


def test_a_definitions_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, {"flags": {"f": flag(None)}, "metadata": {"pad": "x" * 5_000}})
    out = capped("validate", "--max-definitions-bytes", "4096", str(path))
    assert out.returncode == 1
    assert "bytes, over the limit of 4096 bytes (max-definitions-bytes)" in out.stdout
    endless = capped("validate", "/dev/zero", timeout=30)
    assert endless.returncode == 1
    assert "more than the limit of 16777216 bytes" in endless.stdout


def nots(count: int, inner: Any = True) -> Any:
    for _ in range(count):
        inner = {"!": inner}
    return inner


def test_a_rule_as_deep_as_the_limit_loads_and_one_level_more_is_refused_with_its_path() -> None:
    limits = DefinitionLimits(max_rule_depth=10)
    ok = Snapshot.build({"flags": {"f": flag({"if": [nots(7), "on", "off"]})}}, limits=limits)
    assert ok.problems == () and ok.evaluate("f", {}, NOW).variant == "off"
    deep = Snapshot.build({"flags": {"f": flag({"if": [nots(8), "on", "off"]})}}, limits=limits)
    assert problems(deep) == {
        "flags.f.targeting.if[0]" + ".!" * 7: "rule nested deeper than 10 levels"
    }


def test_the_depth_of_a_referenced_evaluator_counts_where_it_is_used() -> None:
    limits = DefinitionLimits(max_rule_depth=10)
    doc = {
        "$evaluators": {"deep": nots(5)},
        "flags": {
            "shallow": flag({"if": [{"$ref": "deep"}, "on", "off"]}),
            "deeper": flag({"if": [nots(3, {"$ref": "deep"}), "on", "off"]}),
        },
    }
    assert problems(Snapshot.build(doc, limits=limits)) == {
        "flags.deeper.targeting.if[0].!.!.!": "rule nested deeper than 10 levels"
    }
