"""Property-test material for the core: hostile text and junk documents, the canary file
that any executed definition text would create, and the checks every built or refused
document and every resolution must pass.

Hostile text (quotes, backslashes, newlines, Python source, dunder names, names the
generated code uses) goes into flag keys, variant names, rule constants and var paths; it
must stay data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from flagedge.definitions import OPERATORS
from flagedge.errors import DefinitionError
from flagedge.model import Reason, Resolution
from flagedge.snapshot import Snapshot

NOW = 1_700_000_000
EMITTED = {Reason.STATIC, Reason.TARGETING_MATCH, Reason.DEFAULT, Reason.DISABLED, Reason.ERROR}
FAST = settings(
    # More examples for a bug hunt: FLAGEDGE_PROP_EXAMPLES=3000 pytest tests/test_engine.py
    max_examples=int(os.environ.get("FLAGEDGE_PROP_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A file that any executed definition text below would create.
CANARY_DIR = Path(tempfile.mkdtemp(prefix="flagedge-canary-"))
CANARY = CANARY_DIR / "pwned"
PY_CANARY = f"__import__('pathlib').Path({str(CANARY)!r}).touch()"

HOSTILE = [
    '"',
    "'",
    "\\",
    "\\'",
    '\\"',
    "\n",
    "\r\n",
    '"""',
    "'''",
    "\\n",
    "\t#",
    "__import__",
    "__builtins__",
    "__class__",
    "__dict__",
    "os.system('x')",
    "__import__('os').system('x')",
    PY_CANARY,
    f'"); {PY_CANARY}; ("',
    f"'); {PY_CANARY}; ('",
    f"\n{PY_CANARY}\n",
    "c0",
    "c1",
    "t1",
    "h0",
    "ctx",
    "now",
    "rule",
    "_truthy",
    "_general",
    "_outcome",
    "_Exception",
    "None",
    "True",
    "lambda: 0",
    "{",
    "}",
    "{0}",
    "%s",
    "${x}",
    "\x00",
    "\u2028",
    "ü",
    "😀",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "$flagd",
    "$ref",
    "var",
    "targetingKey",
    "1",
    "1e400",
    "-0",
    "x" * 5000,
]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
# Definitions refuse text UTF-8 cannot carry (a lone surrogate); contexts may still hold it.
storable = hostile.filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t))
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile,
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(hostile, children, max_size=4))


json_value = st.recursive(json_scalar, _containers, max_leaves=12)
operator = st.one_of(st.sampled_from(sorted(OPERATORS)), st.sampled_from(["$ref", "log"]), hostile)


def _operations(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda op, args: {op: args}, operator, st.lists(children, max_size=4)),
        st.builds(lambda op, arg: {op: arg}, operator, children),
        st.lists(children, max_size=3),
    )


logic = st.recursive(json_scalar, _operations, max_leaves=14)


def maybe_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (5 in 6) a plausible field, sometimes any JSON value."""
    return st.sampled_from([True] * 5 + [False]).flatmap(lambda ok: strategy if ok else json_value)


rooted_logic = st.builds(
    lambda op, args: {op: args},
    st.one_of(st.sampled_from(sorted(OPERATORS)), operator),
    st.lists(logic, max_size=4),
)


variant_values = st.one_of(
    st.dictionaries(hostile, st.booleans(), min_size=1, max_size=3),
    st.dictionaries(hostile, hostile, min_size=1, max_size=3),
    st.dictionaries(hostile, st.one_of(st.integers(-10, 10), st.floats(-1e6, 1e6)), min_size=1),
    st.dictionaries(hostile, st.dictionaries(hostile, json_value, max_size=2), min_size=1),
)


@st.composite
def flag_shaped(draw: st.DrawFn) -> Any:
    variants = draw(maybe_junk(variant_values))
    flag: dict[str, Any] = {
        "state": draw(maybe_junk(st.sampled_from(["ENABLED", "DISABLED"]))),
        "variants": variants,
    }
    if draw(st.booleans()):
        names = list(variants) if isinstance(variants, dict) and variants else ["x"]
        flag["defaultVariant"] = draw(maybe_junk(st.sampled_from([*names, None, ""])))
    if draw(st.booleans()):
        flag["targeting"] = draw(maybe_junk(rooted_logic))
    if draw(st.booleans()):
        flag["metadata"] = draw(
            maybe_junk(st.dictionaries(hostile, st.one_of(hostile, st.booleans()), max_size=3))
        )
    if draw(st.booleans()):
        flag[draw(hostile)] = draw(json_value)  # an unknown field
    return flag


@st.composite
def document_shaped(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {}
    if draw(st.sampled_from([True] * 9 + [False])):
        doc["flags"] = draw(
            maybe_junk(st.dictionaries(hostile, flag_shaped(), min_size=1, max_size=3))
        )
    if draw(st.booleans()):
        doc["$evaluators"] = draw(maybe_junk(st.dictionaries(hostile, rooted_logic, max_size=2)))
    if draw(st.booleans()):
        doc["metadata"] = draw(
            maybe_junk(st.dictionaries(hostile, st.one_of(hostile, st.integers()), max_size=3))
        )
    return doc


any_document = maybe_junk(document_shaped())
any_context = st.dictionaries(
    st.one_of(hostile, st.sampled_from(["targetingKey", "x", "email", "user", "$flagd"])),
    json_value,
    max_size=5,
)


def build_or_problems(doc: Any) -> Snapshot | None:
    """Build, or check the DefinitionError it raised and return None."""
    try:
        snap = Snapshot.build(doc)
    except DefinitionError as exc:
        assert exc.problems, "a DefinitionError must list its problems"
        for p in exc.problems:
            assert isinstance(p.path, str) and isinstance(p.message, str)
            assert p.message.strip(), f"empty message for {p.path!r}"
            # The root path ("") is only for a document that is not an object at all.
            assert p.path or not isinstance(doc, dict), f"unlocated problem: {p}"
        return None
    assert not CANARY.exists(), "definition text was executed"
    return snap


def check_resolution(res: Any, key: str) -> None:
    assert isinstance(res, Resolution)
    assert res.key == key
    assert res.reason in EMITTED, res
    assert (res.error_code is not None) == (res.reason is Reason.ERROR), res
    if res.reason in (Reason.ERROR, Reason.DISABLED):
        assert res.value is None and res.variant is None, res
    if res.variant is not None:
        assert res.value is not None, res


hostile_nonempty = storable.filter(bool)
