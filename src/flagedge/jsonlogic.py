"""The JSON Logic operators that compiled rules call: JavaScript-flavoured coercions.

Compiled rules inline the common, well-typed cases (a string compared with a string
constant, a number with a number); everything else lands here. The semantics follow the
JSON Logic reference implementations flagd's ecosystem uses: ``==`` is JavaScript loose
equality, ``<`` compares numbers numerically and strings lexically, truthiness is
JavaScript's (``[]`` and ``""`` are false, ``"0"`` is true) except that an empty
object is false, as in flagd's Go implementation, and arithmetic
coerces with ``Number()``. Custom operators (``sem_ver``, ``starts_with``, ``ends_with``,
``fractional``) answer None for bad input, so an enclosing ``if`` falls through.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

NAN = math.nan
_NUMERIC = (int, float)


def truthy(v: Any) -> bool:
    if v is None:
        return False
    cls = v.__class__
    if cls is bool:
        return bool(v)
    if cls is float:
        return bool(v == v and v != 0.0)  # NaN is falsy
    # flagd's Go JSON Logic treats an empty object as false (JavaScript would say true);
    # we serve as flagd does.
    return bool(v)


def to_number(v: Any) -> int | float:
    cls = v.__class__
    if cls is int or cls is float:
        return v  # type: ignore[no-any-return]
    if cls is bool:
        return int(v)
    if v is None:
        return 0
    if cls is str:
        s = v.strip()
        if not s:
            return 0
        if s.lower() in ("inf", "-inf", "+inf", "infinity", "-infinity", "+infinity", "nan"):
            if s in ("Infinity", "+Infinity"):
                return math.inf
            if s == "-Infinity":
                return -math.inf
            return NAN
        try:
            return float(s) if not _INT_RE.fullmatch(s) else int(s)
        except ValueError:
            return NAN
    if cls is list:
        if not v:
            return 0
        if len(v) > 1:
            return NAN
        return to_number(v[0])
    return NAN


_INT_RE = re.compile(r"[+-]?\d+")


def to_string(v: Any) -> str:
    cls = v.__class__
    if cls is str:
        return v  # type: ignore[no-any-return]
    if v is None:
        return "null"
    if cls is bool:
        return "true" if v else "false"
    if cls is int:
        return str(v)
    if cls is float:
        if v != v:
            return "NaN"
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return f"{v:.15g}" if abs(v) < 1e21 else repr(v)
    if cls is list:
        return ",".join("" if x is None else to_string(x) for x in v)
    return "[object Object]"


def loose_eq(a: Any, b: Any) -> bool:
    """JavaScript ``==`` on JSON values."""
    ta, tb = a.__class__, b.__class__
    if ta is tb:
        if ta is list or ta is dict:
            return a is b
        return bool(a == b)
    if a is None or b is None:
        return False
    if isinstance(a, _NUMERIC) or isinstance(b, _NUMERIC):
        if ta is dict or tb is dict:
            return False
        return bool(to_number(a) == to_number(b))
    # str vs list / list vs str compare as strings; dicts never equal a primitive
    if ta is dict or tb is dict:
        return False
    return to_string(a) == to_string(b)


def strict_eq(a: Any, b: Any) -> bool:
    """JavaScript ``===`` on JSON values: same type and value; lists/objects by identity."""
    ta, tb = a.__class__, b.__class__
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if isinstance(a, _NUMERIC) and isinstance(b, _NUMERIC):
        return bool(a == b)
    if ta is not tb:
        return False
    if ta is list or ta is dict:
        return a is b
    return bool(a == b)


def _cmp_pair(a: Any, b: Any) -> tuple[Any, Any]:
    if a.__class__ is str and b.__class__ is str:
        return a, b
    if isinstance(a, _NUMERIC) or isinstance(b, _NUMERIC):
        return to_number(a), to_number(b)
    if a.__class__ is str or b.__class__ is str:
        return to_string(a), to_string(b)
    return to_number(a), to_number(b)


def lt(a: Any, b: Any) -> bool:
    x, y = _cmp_pair(a, b)
    return bool(x < y)


def le(a: Any, b: Any) -> bool:
    x, y = _cmp_pair(a, b)
    return bool(x <= y)


def gt(a: Any, b: Any) -> bool:
    x, y = _cmp_pair(a, b)
    return bool(x > y)


def ge(a: Any, b: Any) -> bool:
    x, y = _cmp_pair(a, b)
    return bool(x >= y)


def add(*args: Any) -> int | float:
    total: int | float = 0
    for a in args:
        total += to_number(a)
    return total


def mul(*args: Any) -> int | float:
    total: int | float = 1
    for a in args:
        total *= to_number(a)
    return total


def sub(a: Any, b: Any = None) -> int | float:
    if b is None:
        return -to_number(a)
    return to_number(a) - to_number(b)


def div(a: Any, b: Any) -> float:
    x, y = to_number(a), to_number(b)
    if y == 0:
        if x == 0 or x != x:
            return NAN
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def mod(a: Any, b: Any) -> float | int:
    x, y = to_number(a), to_number(b)
    if y == 0 or x != x or y != y or math.isinf(x):
        return NAN
    # JavaScript's % keeps the sign of the dividend
    r = math.fmod(x, y)
    if isinstance(x, int) and isinstance(y, int):
        return int(r)
    return r


def _extreme(
    pick: Callable[[list[int | float]], int | float], name: str
) -> Callable[..., int | float]:
    """min or max over the arguments as numbers; NaN when there are none or one is NaN.
    A closure rather than a wrapper: compiled rules call it, so it adds no call."""

    def extreme(*args: Any) -> int | float:
        if not args:
            return NAN
        nums = [to_number(a) for a in args]
        if any(n != n for n in nums):
            return NAN
        return pick(nums)

    extreme.__name__ = extreme.__qualname__ = name
    return extreme


minimum = _extreme(min, "minimum")
maximum = _extreme(max, "maximum")


def cat(*args: Any) -> str:
    return "".join(to_string(a) for a in args)


def substr(s: Any, start: Any = 0, length: Any = None) -> str:
    text = to_string(s)
    n = len(text)
    i = to_number(start)
    if i != i:
        i = 0
    i = int(i)
    begin = max(n + i, 0) if i < 0 else min(i, n)
    if length is None:
        return text[begin:]
    ln = to_number(length)
    if ln != ln:
        return ""
    ln = int(ln)
    end = max(n + ln, begin) if ln < 0 else begin + ln
    return text[begin:end]


def contains(needle: Any, haystack: Any) -> bool:
    """JSON Logic ``in``: substring for a string haystack, membership for an array."""
    if haystack.__class__ is list:
        return needle in haystack
    if haystack.__class__ is str:
        return to_string(needle) in haystack
    return False


def merge(*args: Any) -> list[Any]:
    out: list[Any] = []
    for a in args:
        if a.__class__ is list:
            out.extend(a)
        else:
            out.append(a)
    return out


def var_path(data: Any, parts: Sequence[str], default: Any) -> Any:
    """Walk a dotted ``var`` path through objects and arrays (numeric parts index arrays)."""
    for part in parts:
        cls = data.__class__
        if cls is dict or isinstance(data, Mapping):
            data = data.get(part)
        elif cls is list or cls is str:
            if part == "length":
                return len(data)
            if not part.isdigit() or (len(part) > 1 and part[0] == "0"):
                return default
            idx = int(part)
            if idx >= len(data):
                return default
            data = data[idx]
        else:
            return default
        if data is None:
            return default
    return default if data is None else data


def var_dynamic(data: Any, path: Any, default: Any) -> Any:
    """``var`` whose path is computed at evaluation time."""
    if path is None or path == "" or path == []:
        return data
    if isinstance(path, _NUMERIC) and not isinstance(path, bool):
        if path != int(path):
            return default
        return var_path(data, (str(int(path)),), default)
    return var_path(data, to_string(path).split("."), default)


def missing(data: Any, keys: Sequence[Any]) -> list[Any]:
    if len(keys) == 1 and keys[0].__class__ is list:
        keys = keys[0]
    out = []
    for k in keys:
        v = var_dynamic(data, k, None)
        if v is None or v == "":
            out.append(k)
    return out


def missing_some(data: Any, need: Any, keys: Any) -> list[Any]:
    if keys.__class__ is not list:
        return []
    absent = missing(data, keys)
    if len(keys) - len(absent) >= to_number(need):
        return []
    return absent


def op_map(items: Any, fn: Callable[[Any, int], Any], now: int) -> list[Any]:
    if items.__class__ is not list:
        return []
    return [fn(item, now) for item in items]


def op_filter(items: Any, fn: Callable[[Any, int], Any], now: int) -> list[Any]:
    if items.__class__ is not list:
        return []
    return [item for item in items if truthy(fn(item, now))]


def op_all(items: Any, fn: Callable[[Any, int], Any], now: int) -> bool:
    if items.__class__ is not list or not items:
        return False
    return all(truthy(fn(item, now)) for item in items)


def op_some(items: Any, fn: Callable[[Any, int], Any], now: int) -> bool:
    if items.__class__ is not list:
        return False
    return any(truthy(fn(item, now)) for item in items)


def op_none(items: Any, fn: Callable[[Any, int], Any], now: int) -> bool:
    if items.__class__ is not list:
        return True
    return not any(truthy(fn(item, now)) for item in items)


def op_reduce(items: Any, fn: Callable[[Any, int], Any], init: Any, now: int) -> Any:
    if items.__class__ is not list:
        return init
    acc = init
    for item in items:
        acc = fn({"current": item, "accumulator": acc}, now)
    return acc


def starts_with(a: Any, b: Any) -> bool | None:
    if a.__class__ is not str or b.__class__ is not str:
        return None
    return bool(a.startswith(b))


def ends_with(a: Any, b: Any) -> bool | None:
    if a.__class__ is not str or b.__class__ is not str:
        return None
    return bool(a.endswith(b))


# -- sem_ver -----------------------------------------------------------------------------

_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)

SemverKey = tuple[Any, ...]


def semver_key(value: Any) -> SemverKey | None:
    """A sortable key with semver precedence, or None for an invalid version.

    Accepts a leading v/V and pads partial versions (``1`` and ``1.2``); build metadata
    is ignored; a prerelease sorts below its release.
    """
    if value is None:
        return None
    text = value if value.__class__ is str else _semver_text(value)
    if text[:1] in ("v", "V"):
        text = text[1:]
    numeric = text.split("-", 1)[0].split("+", 1)[0]
    dots = numeric.count(".")
    if dots < 2:
        text = numeric + ".0" * (2 - dots) + text[len(numeric) :]
    m = _SEMVER.fullmatch(text)
    if m is None:
        return None
    major, minor, patch, pre = int(m[1]), int(m[2]), int(m[3]), m[4]
    if pre is None:
        return (major, minor, patch, 1)
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, *ids)


def _semver_text(value: Any) -> str:
    if value.__class__ is bool:
        return "true" if value else "false"
    if value.__class__ is float and value.is_integer():
        return str(int(value))
    return str(value)


def semver_compare(left: SemverKey | None, op: Any, right: SemverKey | None) -> bool | None:
    if left is None or right is None:
        return None
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "^":
        return bool(left[0] == right[0])
    if op == "~":
        return bool(left[0] == right[0] and left[1] == right[1])
    return None


def sem_ver(a: Any, op: Any, b: Any) -> bool | None:
    return semver_compare(semver_key(a), op, semver_key(b))
