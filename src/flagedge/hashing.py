"""The one place that hashes for bucketing.

Two schemes place a user in a ``fractional`` bucket (see the flagd compatibility notes):

    v2 (flagd 0.15-0.16)   murmur3_x86_32(utf8(bucketing string), seed 0)
    v3 (flagd-core 2.0)    murmur3_x86_32(canonical CBOR(bucketing value), seed 0)

and both map the unsigned 32-bit hash onto ``[0, total)`` with ``(h * total) >> 32``. Every
bucket decision in flagedge (``fractional``, forced rollouts) goes through ``thresholds``,
which turns that formula into hash thresholds once, so that a request only compares.
The implicit v2 key is ``flagKey + targetingKey``; the implicit v3 key is the CBOR array
``[flagKey, targetingKey]``. Strings (the common case) are encoded by hand here, since the
header is a few bytes; other values go through cbor2's canonical encoder after integral
floats are folded into integers, exactly as the reference evaluator does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import cbor2
import mmh3

from ._accel import speedups

# mmh3.mmh3_32_uintdigest(data) is murmur3_x86_32 with seed 0 as an unsigned int; it skips
# the keyword handling of mmh3.hash and is the cheapest call the library offers.
murmur3_32 = mmh3.mmh3_32_uintdigest

MAX_TOTAL_WEIGHT = 2_147_483_647  # MaxInt32: flagd refuses larger weight sums
_INT_LOW = -(2**63)
_INT_HIGH = 2**64 - 1


class Scheme(StrEnum):
    """A fractional bucketing scheme."""

    V2 = "v2"
    V3 = "v3"


def cbor_text(s: str) -> bytes:
    """CBOR encoding of a text string (major type 3), shortest-length header."""
    data = s.encode("utf-8", "surrogatepass")
    n = len(data)
    if n < 24:
        return bytes((0x60 | n,)) + data
    if n < 0x100:
        return bytes((0x78, n)) + data
    if n < 0x10000:
        return b"\x79" + n.to_bytes(2, "big") + data
    if n < 0x100000000:
        return b"\x7a" + n.to_bytes(4, "big") + data
    return b"\x7b" + n.to_bytes(8, "big") + data


def _normalise(value: Any) -> Any:
    """Fold integral floats in [-2^63, 2^64-1] into ints, recursively (-0.0 becomes 0)."""
    if isinstance(value, float):
        if value.is_integer() and _INT_LOW <= value <= _INT_HIGH:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_cbor(value: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 4.2.1) of a JSON value, as the v3 scheme hashes it."""
    if value.__class__ is str:
        return cbor_text(value)
    return bytes(cbor2.dumps(_normalise(value), canonical=True))


def v3_pair_prefix(flag_key: str) -> bytes:
    """The bytes of the implicit v3 key up to the targeting key: array(2) + flag key."""
    return b"\x82" + cbor_text(flag_key)


def hash_v2(bucketing: str) -> int:
    return int(murmur3_32(bucketing.encode("utf-8", "surrogatepass")))


def hash_v3(value: Any) -> int | None:
    """Hash a v3 bucketing value; None when the value cannot be bucketed (null, NaN, ...)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        return int(murmur3_32(canonical_cbor(value)))
    except (TypeError, ValueError, cbor2.CBOREncodeError, OverflowError):
        return None


def thresholds(bounds: Sequence[int], total: int) -> tuple[int, ...]:
    """Hash thresholds for cumulative bucket bounds out of ``total``.

    A hash h falls below bound b when ``(h * total) >> 32 < b``, which holds exactly when
    ``h < ceil(b * 2**32 / total)``; so ``bisect_right(thresholds, h)`` is the bucket index,
    and ``h < thresholds([b], total)[0]`` tests one bound.
    """
    return tuple(-((-b << 32) // total) for b in bounds)


# The CBOR text header for each UTF-8 length below CBOR_PREFIXED bytes: generated rules
# join prefix + header + key in one step instead of calling cbor_text (UUID keys are 36).
CBOR_PREFIXED = 48
CBOR_TEXT_HEADERS = tuple(bytes((0x60 | n,)) if n < 24 else bytes((0x78, n)) for n in range(256))


def implicit_hasher(scheme: Scheme, flag_key: str) -> Callable[[str], int]:
    """The hash of a flag's implicit bucketing key, as a function of a (non-empty string)
    targeting key: ``flagKey + targetingKey`` (v2) or CBOR ``[flagKey, targetingKey]`` (v3)."""
    if scheme is Scheme.V2:

        def v2(targeting_key: str) -> int:
            return hash_v2(flag_key + targeting_key)

        return v2
    prefix = v3_pair_prefix(flag_key)
    pair = None if speedups is None else speedups.v3_pair

    def v3(targeting_key: str) -> int:
        if pair is not None:
            with contextlib.suppress(UnicodeError):  # a lone surrogate: the encoder below
                return int(pair(prefix, targeting_key))
        return int(murmur3_32(prefix + cbor_text(targeting_key)))

    return v3
