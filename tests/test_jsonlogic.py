"""The JSON Logic operators (flagedge.jsonlogic) that compiled rules fall back on when a case
is not inlined: JavaScript's coercions (``Number()``, ``String()``, ``==``, ``<``), its
arithmetic (division by zero, ``%`` keeping the dividend's sign), ``var`` paths, the array
operators on what is not an array, and ``sem_ver``. Then the same operators as rules reach
them: with operands only known when a request comes.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import pytest

from flagedge import jsonlogic as jl
from flagedge.model import Reason
from flagedge.snapshot import Snapshot

NOW = 1_700_000_000
NAN = math.nan


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same type (1 is not 1.0 is not True)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


# -- coercions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        (None, False),
        (True, True),
        (False, False),
        (0, False),
        (7, True),
        (0.0, False),
        (NAN, False),
        (0.5, True),
        ("", False),
        ("0", True),
        ([], False),
        ([0], True),
        ({}, False),  # flagd's Go JSON Logic; JavaScript would say true
        ({"a": 1}, True),
    ],
)
def test_truthiness_is_javascripts_except_that_an_empty_object_is_false(
    value: Any, truthy: bool
) -> None:
    assert jl.truthy(value) is truthy


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (5, 5),
        (2.5, 2.5),
        (True, 1),
        (False, 0),
        (None, 0),
        ("", 0),
        ("   ", 0),
        (" 12 ", 12),
        ("-3", -3),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("Infinity", math.inf),
        ("+Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("infinity", NAN),  # Number() is case-sensitive: only "Infinity" is a number
        ("inf", NAN),
        ("nan", NAN),
        ("twelve", NAN),
        ([], 0),
        (["7"], 7),
        ([[2.5]], 2.5),
        ([1, 2], NAN),
        ({}, NAN),
    ],
)
def test_numbers_are_read_as_javascripts_number_reads_them(value: Any, number: Any) -> None:
    assert same(jl.to_number(value), number)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("s", "s"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (2.0, "2"),
        (-0.0, "0"),
        (0.1, "0.1"),
        (NAN, "NaN"),
        (1e21, "1e+21"),
        ([1, None, "a", [2, 3]], "1,,a,2,3"),
        ({"a": 1}, "[object Object]"),
    ],
)
def test_values_are_written_as_javascripts_string_writes_them(value: Any, text: str) -> None:
    assert jl.to_string(value) == text


# -- equality and order -----------------------------------------------------------------------

SHARED = [1]


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        ("1", 1, True),
        (True, 1, True),
        ("1", True, True),
        (None, None, True),
        (None, 0, False),  # null equals only null (and undefined)
        (0, None, False),
        ("", 0, True),
        ([1, 2], "1,2", True),
        ("1,2", [1, 2], True),
        ([1], [1], False),  # two arrays: equal only when they are the same array
        (SHARED, SHARED, True),
        ({}, {}, False),
        ({}, 1, False),
        ("[object Object]", {}, False),
        ("a", "b", False),
    ],
)
def test_loose_equality_is_javascripts_double_equals(a: Any, b: Any, equal: bool) -> None:
    assert jl.loose_eq(a, b) is equal


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (1, True, False),
        (True, True, True),
        ("1", 1, False),
        (None, None, True),
        ("a", "a", True),
        ([1], [1], False),
        (SHARED, SHARED, True),
    ],
)
def test_strict_equality_needs_the_same_type_and_value(a: Any, b: Any, equal: bool) -> None:
    assert jl.strict_eq(a, b) is equal


@pytest.mark.parametrize(
    ("a", "b", "less"),
    [
        ("a", "b", True),  # two strings: lexically
        ("2", "10", False),
        (2, "10", True),  # a number on either side: numerically
        ("10", 2, False),
        (None, 1, True),  # null is 0
        ([2], "10", False),  # an array against a string: as strings
        ([1], [2], True),  # neither a number nor a string: as numbers
        ("x", 1, False),  # NaN is neither less nor more
    ],
)
def test_order_compares_strings_lexically_and_anything_else_as_numbers(
    a: Any, b: Any, less: bool
) -> None:
    assert jl.lt(a, b) is less
    assert jl.gt(b, a) is less


@pytest.mark.parametrize(
    ("a", "b", "at_most", "at_least"),
    [
        ("2", "10", False, True),
        (2, "2", True, True),
        (None, 0, True, True),
        ("x", 1, False, False),  # NaN is neither
    ],
)
def test_at_most_and_at_least_coerce_as_less_does(
    a: Any, b: Any, at_most: bool, at_least: bool
) -> None:
    assert (jl.le(a, b), jl.ge(a, b)) == (at_most, at_least)


# -- arithmetic -------------------------------------------------------------------------------


def test_sums_and_products_coerce_each_operand_and_start_from_their_identity() -> None:
    assert same(jl.add(), 0) and same(jl.mul(), 1)
    assert same(jl.add("1", 2, True, None), 4)
    assert same(jl.add("1.5", 1), 2.5)
    assert same(jl.mul("2", 3), 6)
    assert same(jl.add("x", 1), NAN)


def test_minus_with_one_operand_negates() -> None:
    assert same(jl.sub(5), -5)
    assert same(jl.sub("5", 2), 3)


@pytest.mark.parametrize(
    ("a", "b", "quotient"),
    [
        (6, "3", 2.0),
        (1, 0, math.inf),
        (-1, 0, -math.inf),
        (1, -0.0, -math.inf),  # the sign of a zero divisor counts
        (0, 0, NAN),
        ("x", 0, NAN),
    ],
)
def test_division_by_zero_is_infinite_or_nan_as_in_javascript(
    a: Any, b: Any, quotient: float
) -> None:
    assert same(jl.div(a, b), quotient)


@pytest.mark.parametrize(
    ("a", "b", "remainder"),
    [
        (7, 3, 1),
        (-7, 2, -1),  # the sign of the dividend, not of the divisor as in Python
        (7, -2, 1),
        (7.5, 2, 1.5),
        (7, math.inf, 7.0),
        (7, 0, NAN),
        (math.inf, 2, NAN),
        ("x", 2, NAN),
        (7, "y", NAN),
    ],
)
def test_remainder_keeps_the_sign_of_the_dividend(a: Any, b: Any, remainder: Any) -> None:
    assert same(jl.mod(a, b), remainder)


def test_min_and_max_of_nothing_or_of_a_non_number_are_nan() -> None:
    assert same(jl.minimum(), NAN) and same(jl.maximum(), NAN)
    assert same(jl.minimum(3, "x"), NAN) and same(jl.maximum(3, "x"), NAN)
    assert same(jl.minimum("3", 1, 2.5), 1) and same(jl.maximum("3", 1, 2.5), 3)


# -- strings and arrays -----------------------------------------------------------------------


def test_cat_writes_each_operand_as_a_string() -> None:
    assert jl.cat("a", 1, None, True, 2.0, [1, 2]) == "a1nulltrue21,2"


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("hello", 1), "ello"),
        (("hello", -3), "llo"),
        (("hello", -10), "hello"),
        (("hello", 10), ""),
        (("hello", 1, 3), "ell"),
        (("hello", 1, -1), "ell"),  # a negative length stops that far from the end
        (("hello", 3, -4), ""),
        (("hello", "x"), "hello"),  # a start that is not a number is 0
        (("hello", 0, "x"), ""),  # a length that is not a number is 0
        ((12345, 1, 2), "23"),
    ],
)
def test_substr_takes_a_start_and_an_optional_length_either_from_the_end(
    args: tuple[Any, ...], text: str
) -> None:
    assert jl.substr(*args) == text


def test_in_is_membership_for_an_array_and_a_substring_for_a_string() -> None:
    assert jl.contains("a", ["a", "b"]) and not jl.contains(1, ["1"])
    assert jl.contains(1, "a1b") and jl.contains("ll", "hello")
    assert not jl.contains("x", 5) and not jl.contains("x", None)


def test_merge_flattens_one_level() -> None:
    assert jl.merge([1, 2], 3, [[4]], None) == [1, 2, 3, [4], None]


def test_the_array_operators_treat_what_is_not_an_array_as_empty() -> None:
    def double(item: Any, now: int) -> Any:
        return item * 2

    for not_a_list in (None, "abc", {"a": 1}, 3):
        assert jl.op_map(not_a_list, double, NOW) == []
        assert jl.op_filter(not_a_list, double, NOW) == []
        assert jl.op_all(not_a_list, double, NOW) is False
        assert jl.op_some(not_a_list, double, NOW) is False
        assert jl.op_none(not_a_list, double, NOW) is True
        assert jl.op_reduce(not_a_list, double, "init", NOW) == "init"
    assert jl.op_all([], double, NOW) is False  # all of nothing is false in JSON Logic
    assert jl.op_map([1, 2], double, NOW) == [2, 4]
    assert jl.op_filter([0, 1, 2], double, NOW) == [1, 2]
    assert jl.op_some([0, 1], double, NOW) and not jl.op_none([0, 1], double, NOW)


# -- var and missing --------------------------------------------------------------------------

DATA: dict[str, Any] = {
    "user": {"name": "ana", "tags": ["a", "b", "c"], "none": None},
    "list": [10, 20],
    "text": "hello",
    "zero": 0,
}


@pytest.mark.parametrize(
    ("parts", "value"),
    [
        (("user", "name"), "ana"),
        (("user", "tags", "1"), "b"),
        (("user", "tags", "length"), 3),
        (("text", "length"), 5),
        (("text", "1"), "e"),
        (("list", "01"), "default"),  # no leading zeros in an index
        (("list", "x"), "default"),
        (("list", "5"), "default"),
        (("zero", "x"), "default"),  # a number has no parts
        (("user", "none"), "default"),  # null is absent
        (("user", "none", "deeper"), "default"),
        (("zero",), 0),  # a falsy value that is there is not the default
    ],
)
def test_a_var_path_walks_objects_and_arrays_and_falls_back_to_its_default(
    parts: tuple[str, ...], value: Any
) -> None:
    assert jl.var_path(DATA, parts, "default") == value


def test_a_var_path_reads_any_mapping() -> None:
    assert jl.var_path(MappingProxyType({"a": {"b": 1}}), ("a", "b"), None) == 1


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (None, DATA),
        ("", DATA),
        ([], DATA),
        ("user.name", "ana"),
        (1, "default"),  # an index into an object names nothing
        (1.5, "default"),
        (True, "default"),  # read as the key "true"
    ],
)
def test_a_computed_var_path_may_be_empty_a_dotted_string_or_an_index(
    path: Any, value: Any
) -> None:
    assert jl.var_dynamic(DATA, path, "default") == value


def test_a_computed_index_reads_an_array() -> None:
    assert jl.var_dynamic(["a", "b"], 1, None) == "b"
    assert jl.var_dynamic(["a", "b"], 1.0, None) == "b"


def test_missing_lists_the_keys_that_are_absent_null_or_empty() -> None:
    data = {"a": 1, "b": "", "c": None, "d": {"e": 0}}
    assert jl.missing(data, ["a", "b", "c", "d.e", "f"]) == ["b", "c", "f"]
    assert jl.missing(data, [["a", "f"]]) == ["f"]  # one array argument is the key list


def test_missing_some_is_empty_once_enough_keys_are_present() -> None:
    data = {"a": 1, "b": 2}
    assert jl.missing_some(data, 1, ["a", "x"]) == []
    assert jl.missing_some(data, 2, ["a", "x", "y"]) == ["x", "y"]
    assert jl.missing_some(data, 1, "a") == []  # no key list: nothing to report


# -- custom operators -------------------------------------------------------------------------


def test_starts_with_and_ends_with_answer_none_for_what_is_not_a_string() -> None:
    assert jl.starts_with("hello", "he") is True and jl.ends_with("hello", "lo") is True
    assert jl.starts_with("hello", "lo") is False and jl.ends_with("hello", "he") is False
    assert jl.starts_with(1, "1") is None and jl.ends_with("1", 1) is None


@pytest.mark.parametrize(
    ("version", "key"),
    [
        ("1.2.3", (1, 2, 3, 1)),
        ("v1.2.3", (1, 2, 3, 1)),
        ("V1.2.3", (1, 2, 3, 1)),
        ("1", (1, 0, 0, 1)),
        ("1.2", (1, 2, 0, 1)),
        (1, (1, 0, 0, 1)),
        (2.0, (2, 0, 0, 1)),
        ("1.2.3+build.7", (1, 2, 3, 1)),
        ("1.2.3-alpha.1", (1, 2, 3, 0, (1, 0, "alpha"), (0, 1, ""))),
        ("1.2-rc", (1, 2, 0, 0, (1, 0, "rc"))),
        (None, None),
        (True, None),
        ("01.2.3", None),
        ("1.2.3.4", None),
        ("x.y", None),
    ],
)
def test_a_version_is_parsed_leniently_as_flagd_does(version: Any, key: Any) -> None:
    assert jl.semver_key(version) == key


def test_versions_order_by_semver_precedence() -> None:
    ordered = [
        "1.0.0-2",
        "1.0.0-10",  # numeric identifiers compare as numbers
        "1.0.0-alpha",  # and below alphanumeric ones
        "1.0.0-alpha.1",
        "1.0.0-beta",
        "1.0.0",  # a prerelease sorts below its release
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ]
    keys = [jl.semver_key(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("left", "op", "right", "answer"),
    [
        ("1.2.3", "=", "1.2.3", True),
        ("1.2.3", "!=", "1.2.3", False),
        ("1.2.3", "<", "1.3.0", True),
        ("1.2.3", "<=", "1.2.3", True),
        ("1.2.3", ">", "1.2.3-rc", True),
        ("1.2.3", ">=", "2.0.0", False),
        ("1.9.9", "^", "1.0.0", True),  # the same major version
        ("2.0.0", "^", "1.0.0", False),
        ("1.2.9", "~", "1.2.0", True),  # the same major and minor version
        ("1.3.0", "~", "1.2.0", False),
        ("1.2.3", "==", "1.2.3", None),  # not an operator sem_ver knows
        ("not a version", "=", "1.2.3", None),
        ("1.2.3", "=", None, None),
    ],
)
def test_sem_ver_compares_with_each_operator_and_answers_none_when_it_cannot(
    left: Any, op: Any, right: Any, answer: bool | None
) -> None:
    assert jl.sem_ver(left, op, right) is answer


# -- as rules reach them ----------------------------------------------------------------------


def flag(targeting: Any, variants: dict[str, Any] | None = None, default: str = "no") -> Snapshot:
    return Snapshot.build(
        {
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": variants or {"yes": "Y", "no": "N"},
                    "defaultVariant": default,
                    "targeting": targeting,
                }
            }
        }
    )


def variant(snap: Snapshot, ctx: dict[str, Any]) -> str | None:
    return snap.evaluate("f", ctx, NOW).variant


def test_a_sem_ver_whose_operator_or_version_comes_from_the_context_still_compares() -> None:
    by_op = flag({"if": [{"sem_ver": [{"var": "v"}, {"var": "op"}, "2.0.0"]}, "yes", "no"]})
    assert variant(by_op, {"v": "2.1.0", "op": ">"}) == "yes"
    assert variant(by_op, {"v": "2.1.0", "op": "~"}) == "no"
    assert variant(by_op, {"v": "2.1.0", "op": "is"}) == "no"  # unknown: null, falsy
    by_right = flag({"if": [{"sem_ver": ["1.4.0", "<", {"var": "min"}]}, "yes", "no"]})
    assert variant(by_right, {"min": "v1.5"}) == "yes"
    assert variant(by_right, {"min": "1.3"}) == "no"
    assert variant(by_right, {}) == "no"
    odd_op = flag({"if": [{"sem_ver": [{"var": "v"}, "=~", "1.0.0"]}, "yes", "no"]})
    assert variant(odd_op, {"v": "1.0.0"}) == "no"


def test_operators_on_computed_operands_coerce_as_javascript_does() -> None:
    rule = {
        "if": [
            {"==": [{"+": [{"var": "a"}, {"var": "b"}]}, 3]},
            "yes",
            {"<": [{"var": "a"}, {"var": "b"}]},
            "yes",
            "no",
        ]
    }
    snap = flag(rule)
    assert variant(snap, {"a": "1", "b": 2}) == "yes"  # "1" + 2 is 3 after Number()
    assert variant(snap, {"a": "b", "b": "c"}) == "yes"  # two strings: "b" < "c"
    assert variant(snap, {"a": 9, "b": "10"}) == "yes"  # a number: 9 < 10
    assert variant(snap, {"a": "9", "b": "10"}) == "no"  # two strings: "9" > "10"
    strict = flag({"if": [{"===": [{"var": "a"}, {"var": "b"}]}, "yes", "no"]})
    assert variant(strict, {"a": 1, "b": 1.0}) == "yes"
    assert variant(strict, {"a": 1, "b": True}) == "no"


def test_string_operators_on_computed_operands_answer_only_for_strings() -> None:
    snap = flag({"if": [{"starts_with": [{"var": "s"}, {"var": "p"}]}, "yes", "no"]})
    assert variant(snap, {"s": "hello", "p": "he"}) == "yes"
    assert variant(snap, {"s": "hello", "p": 1}) == "no"
    ends = flag({"if": [{"ends_with": [{"var": "s"}, {"cat": ["l", "o"]}]}, "yes", "no"]})
    assert variant(ends, {"s": "hello"}) == "yes"
    assert variant(ends, {"s": 5}) == "no"


def test_a_rule_may_name_its_variant_with_a_computed_value() -> None:
    numbered = {"1": "one", "2": "two", "true": "T", "false": "F"}
    snap = flag({"var": "pick"}, numbered, default="1")
    assert variant(snap, {"pick": 2}) == "2"
    assert variant(snap, {"pick": 2.0}) == "2"  # written as JavaScript writes 2.0
    assert variant(snap, {"pick": True}) == "true"
    res = snap.evaluate("f", {"pick": 1.5}, NOW)  # "1.5" names no variant
    assert (res.reason, res.error_code) == (Reason.ERROR, "GENERAL")
    res = snap.evaluate("f", {"pick": [1]}, NOW)  # an array names nothing
    assert (res.reason, res.error_code) == (Reason.ERROR, "GENERAL")
