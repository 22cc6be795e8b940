"""A grammar of flagd documents and contexts on which flagedge and the reference evaluator
(openfeature-flagd-core) must agree (hypothesis strategies, for tests/test_reference_evaluator.py
and the engine's properties).

Documents cover every variant type, defaultVariant present, absent or null, ENABLED/DISABLED,
optional metadata; targeting comes from a grammar of the JSON Logic operators flagd
supports; contexts draw their values from the same pools as the rules' constants, so that
branches really are taken.

Exclusions (known, deliberate disagreements; each kept out by the generators):

* ``null == 0`` / ``null == false``: panzi-json-logic coerces null to 0 in ``==``; flagd
  (Go) and JavaScript say false. Loose-equality constants are never 0, 0.0 or false.
* ``"" == 0`` and ``Number("")``: panzi turns "" (and whitespace) into NaN, JavaScript and
  flagd into 0. No constant or context string is empty or whitespace, a computed string
  (``substr`` can give "") is only ordered against strings, and numeric-looking strings
  are plain decimals (no "0x10", "1_0", "Infinity", which Python and JS parse differently).
* ``true === 1`` (and ``false === 0``): panzi implements ``===`` with Python ``==``.
  Strict-equality constants are strings or numbers other than 0 and 1, never booleans.
* Lists compared with ``===``/``==``: panzi compares Python lists by value in ``===``;
  JSON Logic compares them by identity. No list constant appears in an equality.
* ``{}`` truthiness: JavaScript (and panzi) treat an empty object as true, flagd's Go
  (and flagedge) as false. Contexts never hold an empty object.
* Integer truncation: flagd truncates 3.14 to 3 for ResolveInt, the reference raises
  TYPE_MISMATCH. The integer type is never requested of a flag with a float variant.
* Float requested of a boolean flag: the reference's type check accepts a bool as a
  float (Python's bool subclasses int) and answers 0.0/1.0; flagd and flagedge answer
  TYPE_MISMATCH. The float type is never requested of a boolean flag.
* Number stringification of a targeting result: the reference names the variant with
  Python ``str()`` (2.0 -> "2.0"), flagd with Go/JS formatting ("2"). Rules never return
  a computed number as a variant name.
* ``$flagd.timestamp``: the reference reads the real clock. No rule uses it.
* Fractional v2 and the Go-style fallback for a null v2 bucketing value: the reference
  implements v3 only, so every document is built with the v3 scheme.
* Division and ``%`` by zero: Python raises (GENERAL), JavaScript gives Infinity/NaN.
  Divisors are non-zero constants.
* ``%`` of negatives: Python's sign follows the divisor, JavaScript's the dividend. The
  dividend of ``%`` is a non-negative constant or ``user.age`` (never negative).
* ``cat``/string coercion of null inside arrays and of non-BMP text: JavaScript joins
  [null] as "" and indexes UTF-16 units; Python writes "null" and indexes code points.
  Context lists hold no null, and no text is outside the BMP.
* ``min``/``max`` with NaN: Python's min/max depend on argument order. Their arguments
  are numeric constants and numeric-or-absent variables only.
* Binary ``-`` with a null right operand: panzi treats ``{"-":[a, null]}`` as unary
  minus. The right operand of ``-`` is a constant.
* Three-argument comparisons whose third operand is null: panzi falls back to the
  two-argument form. The third operand is a numeric constant.
* ``in`` with booleans: Python's ``True in [1]`` is true, JavaScript's ``includes`` is
  false. Context lists hold no booleans and array constants hold strings only.
* Stringifying booleans: panzi's ``to_string`` checks ``int`` before ``bool`` and writes
  True as "True" (in ``cat``, ``substr``); JavaScript and flagd write "true". String-typed
  context keys never hold booleans.
* ``reduce``'s initial value: panzi does not evaluate it, so it is always a constant.
* ``var`` of the whole data (``""``): the reference adds ``targetingKey`` and ``$flagd``
  to it, flagedge only ``$flagd``. Only named paths are read at top level.
* ``sem_ver`` of a boolean: Python ``str(True)`` is "True", Go gives "true"; both are
  invalid versions anyway, but version variables are strings or integers.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from flagedge.model import FlagType

# -- pools shared by rules and contexts (so that they collide) -------------------------------

VARIANT_NAMES = ["on", "off", "a", "b", "beta", "gold", "true", "false", "1", "2", "ünï"]
STRINGS = [
    "a",
    "b",
    "beta",
    "gold",
    "on",
    "off",
    "true",
    "false",
    "null",
    "1",
    "2",
    "10",
    "2.5",
    "-3",
    "x@acme.io",
    "admin@acme.io",
    "ünï",
    "a-b",
    "Beta",
]
VERSIONS = ["1", "1.2", "1.2.3", "v1.2.3", "2.0.0", "2.0.0-alpha", "2.0.0+build", "0.9.9", "x.y"]
INTS = [-3, -1, 1, 2, 3, 10, 42]  # no 0: null == 0 is a known disagreement
FLOATS = [0.5, 2.5, -1.5, 3.75]
SEMVER_OPS = ["=", "!=", "<", "<=", ">", ">=", "^", "~"]
FLAG_KEYS = ["flag", "my-flag", "feature.x", "ключ", "f1"]

STR_PATHS = ["s", "t", "email", "user.name", "user.tier", "targetingKey", "$flagd.flagKey"]
NUM_PATHS = ["n", "m", "user.age"]
LIST_PATHS = ["l", "nums", "user.tags"]
ANY_PATHS = [*STR_PATHS, *NUM_PATHS, *LIST_PATHS, "b", "v", "user", "nope", "user.nope.deep"]

# -- targeting grammar -------------------------------------------------------------------------

str_const = st.sampled_from(STRINGS)
num_const = st.sampled_from(INTS + FLOATS)
eq_const = st.one_of(str_const, num_const, st.just(True))  # never 0, 0.0, false, ""
strict_const = st.one_of(str_const, st.sampled_from([-3, 2, 3, 10, 2.5, -1.5]))


def var_of(paths: list[str]) -> st.SearchStrategy[Any]:
    plain = st.builds(lambda p: {"var": p}, st.sampled_from(paths))
    with_default = st.builds(
        lambda p, d: {"var": [p, d]}, st.sampled_from(paths), st.one_of(str_const, num_const)
    )
    return st.one_of(plain, plain, with_default)


str_var = var_of(STR_PATHS)
num_var = var_of(NUM_PATHS)
any_var = var_of(ANY_PATHS)


def _num_expr(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda xs: {"+": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"*": xs}, st.lists(children, min_size=1, max_size=2)),
        st.builds(lambda a, b: {"-": [a, b]}, children, num_const),
        st.builds(lambda a: {"-": [a]}, children),
        st.builds(lambda a, b: {"/": [a, b]}, children, num_const),
        st.builds(
            lambda a, b: {"%": [a, b]},
            st.one_of(st.sampled_from([0, 1, 7, 10]), st.just({"var": "user.age"})),
            st.sampled_from([2, 3, 4]),
        ),
        st.builds(
            lambda xs: {"min": xs},
            st.lists(st.one_of(num_const, st.just({"var": "user.age"})), min_size=1, max_size=3),
        ),
        st.builds(
            lambda xs: {"max": xs},
            st.lists(st.one_of(num_const, st.just({"var": "user.age"})), min_size=1, max_size=3),
        ),
    )


num_expr = st.recursive(st.one_of(num_const, num_var), _num_expr, max_leaves=5)


def _str_expr(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda xs: {"cat": xs},
            st.lists(st.one_of(children, num_const), min_size=1, max_size=3),
        ),
        st.builds(
            lambda s, i: {"substr": [s, i]}, children, st.integers(min_value=-4, max_value=4)
        ),
        st.builds(
            lambda s, i, n: {"substr": [s, i, n]},
            children,
            st.integers(min_value=-4, max_value=4),
            st.integers(min_value=-3, max_value=4),
        ),
    )


str_expr = st.recursive(st.one_of(str_const, str_var), _str_expr, max_leaves=4)

CMP = ["<", "<=", ">", ">="]


@st.composite
def comparison(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["eq", "strict", "order", "between"]))
    if kind == "eq":
        op = draw(st.sampled_from(["==", "!="]))
        left = draw(st.one_of(any_var, str_expr, num_expr))
        right = draw(eq_const)
        pair = [left, right] if draw(st.booleans()) else [right, left]
        return {op: pair}
    if kind == "strict":
        op = draw(st.sampled_from(["===", "!=="]))
        left = draw(st.one_of(any_var, str_expr, num_expr))
        pair = [left, draw(strict_const)]
        return {op: pair if draw(st.booleans()) else pair[::-1]}
    op = draw(st.sampled_from(CMP))
    if kind == "order":
        # A computed string (substr) may be "", which Number() reads as 0 in JavaScript
        # and panzi as NaN (excluded): computed strings are ordered against strings only.
        left, right = draw(
            st.one_of(
                st.tuples(st.one_of(num_expr, any_var), st.one_of(num_const, str_const)),
                st.tuples(str_expr, str_const),
            )
        )
        pair = [left, right] if draw(st.booleans()) else [right, left]
        return {op: pair}
    low, high = sorted(draw(st.lists(st.sampled_from(INTS), min_size=2, max_size=2)))
    return {op: [low, draw(num_expr), high]}


@st.composite
def membership(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["in-str", "in-list", "in-ctx-list", "merge", "map"]))
    if kind == "in-str":
        return {"in": [draw(st.one_of(str_const, num_const)), draw(str_expr)]}
    if kind == "in-list":
        return {"in": [draw(st.one_of(str_expr, any_var)), draw(st.lists(str_const, max_size=4))]}
    if kind == "in-ctx-list":
        return {"in": [draw(st.one_of(str_const, num_const)), draw(var_of(LIST_PATHS))]}
    if kind == "merge":
        parts = draw(
            st.lists(
                st.one_of(var_of(LIST_PATHS), st.lists(str_const, max_size=3), str_const),
                min_size=1,
                max_size=3,
            )
        )
        return {"in": [draw(st.one_of(str_var, str_const)), {"merge": parts}]}
    body = draw(st.one_of(st.just({"cat": [{"var": ""}, "!"]}), st.just({"var": ""})))
    return {"in": [draw(str_const), {"map": [draw(var_of(LIST_PATHS)), body]}]}


@st.composite
def custom_op(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["starts_with", "ends_with", "sem_ver"]))
    if kind == "sem_ver":
        left = draw(st.one_of(st.just({"var": "v"}), st.sampled_from(VERSIONS)))
        return {
            "sem_ver": [left, draw(st.sampled_from(SEMVER_OPS)), draw(st.sampled_from(VERSIONS))]
        }
    affix = draw(st.sampled_from(["a", "ad", "@acme.io", ".io", "b", "ü", "1"]))
    return {kind: [draw(st.one_of(str_var, str_expr)), affix]}


@st.composite
def presence(draw: st.DrawFn) -> dict[str, Any]:
    paths = draw(st.lists(st.sampled_from([*ANY_PATHS[:-3], "nope"]), min_size=1, max_size=3))
    if draw(st.booleans()):
        return {"missing": paths}
    return {"missing_some": [draw(st.integers(min_value=0, max_value=3)), paths]}


@st.composite
def iteration(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["some", "all", "none", "filter", "reduce"]))
    if op == "reduce":
        body = {"+": [{"var": "current"}, {"var": "accumulator"}]}
        return {
            draw(st.sampled_from(CMP)): [
                {"reduce": [{"var": "nums"}, body, draw(st.sampled_from([0, 1, 10]))]},
                draw(num_const),
            ]
        }
    src = draw(st.sampled_from(["l", "nums", "user.tags"]))
    test = draw(
        st.one_of(
            st.builds(lambda c: {"==": [{"var": ""}, c]}, eq_const),
            st.builds(lambda op, c: {op: [{"var": ""}, c]}, st.sampled_from(CMP), num_const),
            st.builds(lambda c: {"in": [c, {"var": ""}]}, str_const),
        )
    )
    return {op: [{"var": src}, test]}


atom = st.one_of(
    comparison(),
    comparison(),
    membership(),
    custom_op(),
    presence(),
    iteration(),
    any_var,
    st.booleans(),
)


def _logic_of(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda xs: {"and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"or": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda x: {"!": [x]}, children),
        st.builds(lambda x: {"!!": [x]}, children),
        st.builds(lambda x: {"!": x}, children),
    )


condition = st.recursive(atom, _logic_of, max_leaves=4)

bucket_name = st.one_of(
    st.sampled_from(["on", "off"]), st.sampled_from(VARIANT_NAMES), st.just("ghost")
)


@st.composite
def fractional(draw: st.DrawFn) -> dict[str, Any]:
    buckets = draw(
        st.lists(
            st.one_of(
                st.builds(
                    lambda v, w: [v, w], bucket_name, st.integers(min_value=0, max_value=100)
                ),
                st.builds(lambda v: [v], bucket_name),
            ),
            min_size=1,
            max_size=4,
        )
    )
    by = draw(
        st.sampled_from(
            [
                None,  # implicit: [flagKey, targetingKey]
                {"var": "email"},
                {"var": "user.name"},
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]},
                "fixed-bucketing-string",
            ]
        )
    )
    return {"fractional": buckets if by is None else [by, *buckets]}


leaf_result = st.one_of(
    st.sampled_from(["on", "off", "a"]),
    st.sampled_from(["on", "off", "b"]),
    st.sampled_from(VARIANT_NAMES),
    st.none(),  # the default variant
    st.booleans(),  # the boolean shorthand
    str_var,  # a context value used as the variant name
    fractional(),
)


def _if_chain(results: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        n = draw(st.integers(min_value=1, max_value=3))
        args: list[Any] = []
        for _ in range(n):
            args += [draw(condition), draw(results)]
        if draw(st.booleans()):
            args.append(draw(results))
        return {"if": args}

    return build()


result = st.recursive(leaf_result, _if_chain, max_leaves=6)
targeting = st.one_of(
    _if_chain(result),
    _if_chain(result),
    fractional(),
    condition.filter(lambda c: isinstance(c, dict)),  # the boolean shorthand at top level
    str_var,
    st.just({}),
)

# -- documents ------------------------------------------------------------------------------

VALUE_POOLS: dict[str, st.SearchStrategy[Any]] = {
    "boolean": st.booleans(),
    "string": st.text(alphabet="abcxyzÜ é-", min_size=1, max_size=6),
    "integer": st.integers(min_value=-(2**31), max_value=2**31),
    "float": st.sampled_from([0.25, -1.5, 3.14, 1e10, 2.0, 100]),
    "object": st.dictionaries(
        st.sampled_from(["k", "n", "on"]), st.one_of(st.integers(-5, 5), str_const), max_size=2
    ),
}
REQUESTED = {
    "boolean": FlagType.BOOLEAN,
    "string": FlagType.STRING,
    "integer": FlagType.INTEGER,
    "float": FlagType.FLOAT,
    "object": FlagType.OBJECT,
}
metadata = st.fixed_dictionaries(
    {},
    optional={
        "owner": st.sampled_from(["team-a", "team-b"]),
        "version": st.sampled_from(["v1", "7"]),
        "flagSetId": st.sampled_from(["set-1", "set-2"]),
        "weight": st.one_of(st.integers(0, 9), st.sampled_from([0.5, True, False, "w"])),
    },
)


@st.composite
def flag_def(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(list(VALUE_POOLS)))
    names = draw(st.lists(st.sampled_from(VARIANT_NAMES), min_size=1, max_size=5, unique=True))
    if draw(st.sampled_from([True] * 4 + [False])):  # mostly the names rules use most
        names = list(dict.fromkeys(["on", "off", *names]))
    if draw(st.booleans()):  # a bare condition as targeting names "true"/"false"
        names = list(dict.fromkeys([*names, "true", "false"]))
    variants = {name: draw(VALUE_POOLS[kind]) for name in names}
    flag: dict[str, Any] = {
        "state": draw(st.sampled_from(["ENABLED"] * 9 + ["DISABLED"])),
        "variants": variants,
    }
    default = draw(st.sampled_from(["present", "present", "absent", "null"]))
    if default == "present":
        flag["defaultVariant"] = draw(st.sampled_from(names))
    elif default == "null":
        flag["defaultVariant"] = None
    if draw(st.sampled_from([True] * 9 + [False])):
        flag["targeting"] = draw(targeting)
    if draw(st.booleans()):
        flag["metadata"] = draw(metadata)
    return kind, flag


@st.composite
def document(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """(document, key to evaluate, requested type)."""
    keys = draw(st.lists(st.sampled_from(FLAG_KEYS), min_size=1, max_size=2, unique=True))
    flags: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for key in keys:
        kinds[key], flags[key] = draw(flag_def())
    doc: dict[str, Any] = {"flags": flags}
    if draw(st.booleans()):
        doc["metadata"] = draw(metadata)
    key = draw(st.sampled_from([*keys * 10, "absent-flag"]))
    kind = kinds.get(key, "string")
    requested = draw(st.sampled_from([kind] * 4 + list(REQUESTED)))
    if requested == "float" and kind == "boolean":
        # The reference accepts a bool as a float (bool subclasses int); flagd refuses it.
        requested = "integer"
    if requested == "integer" and key in flags:
        # flagd truncates floats for ResolveInt; the reference refuses them (excluded).
        values = flags[key]["variants"].values()
        if any(isinstance(v, float) for v in values):
            requested = "float"
    return doc, key, requested


# -- contexts -------------------------------------------------------------------------------

scalar = st.one_of(str_const, num_const, st.sampled_from([0, True, False, None]))
# Booleans are kept out of the string-typed keys: panzi stringifies True as "True"
# (``cat``, ``substr``), JavaScript and flagd as "true" (excluded).
str_scalar = st.one_of(str_const, num_const, st.sampled_from([0, None]))
ctx_list = st.lists(st.one_of(str_const, st.sampled_from(INTS)), max_size=4)


def maybe(strategy: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = scalar) -> Any:
    """Mostly the well-typed value, sometimes another scalar (type confusion)."""
    return st.one_of(strategy, strategy, strategy, other)


context = st.fixed_dictionaries(
    {},
    optional={
        "targetingKey": st.one_of(str_const, st.text(alphabet="uxyz019-", min_size=1, max_size=8)),
        "s": maybe(str_const, str_scalar),
        "t": maybe(str_const, str_scalar),
        "email": maybe(
            st.sampled_from(["x@acme.io", "admin@acme.io", "bob@b.io", "ünï@acme.io"]), str_scalar
        ),
        "n": maybe(st.one_of(num_const, st.sampled_from([0, 0.0, 2.0]))),
        "m": maybe(num_const),
        "b": maybe(st.booleans()),
        "v": st.one_of(st.sampled_from(VERSIONS), st.sampled_from([1, 2, 10])),
        "l": st.one_of(ctx_list, scalar),
        "nums": st.one_of(st.lists(num_const, max_size=4), scalar),
        "user": st.fixed_dictionaries(
            {"age": st.integers(min_value=0, max_value=99)},  # never {}: excluded
            optional={
                "name": maybe(str_const, str_scalar),
                "tier": maybe(str_const, str_scalar),
                "tags": ctx_list,
            },
        ),
    },
)
