"""The wire: protobuf <-> Python values, and the enum tables, for the server and the client.

    google.protobuf.Struct / Value  <->  dict / JSON values    (limits applied on the way in)
    Reason, ErrorCode, FlagType     <->  flagedge.v1 enum numbers

Contexts arrive as ``google.protobuf.Struct``. They become plain dicts here, once, so the
core never sees a protobuf type. Struct numbers are doubles; integral ones become ``int``
(below 2**53, where the double is exact) so that targeting sees ``30`` rather than ``30.0``,
as flagd's Go formatting would render it when a number is used as a string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE, ListValue, Struct, Value

from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.errors import RequestError
from flagedge.model import ErrorCode, ErrorCodeNumber, FlagType, Reason, ReasonCode

_EXACT = 2.0**53


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may carry. Each breach is INVALID_ARGUMENT with a message naming it."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_batch_cells: int = 250_000
    max_context_depth: int = 32
    max_context_bytes: int = 64 * 1024

    def transport_limit(self) -> int:
        """The limit handed to grpc: above ours, so that ours fires first with a clear message
        (grpc's own would answer RESOURCE_EXHAUSTED)."""
        return self.max_message_bytes + max(self.max_message_bytes, 1024 * 1024)


def context_to_dict(struct: Struct, limits: Limits) -> dict[str, Any]:
    """A request context as a plain dict, refusing contexts that are too large or too deep."""
    if not struct.fields:
        return {}
    size = struct.ByteSize()
    if size > limits.max_context_bytes:
        raise RequestError(
            f"context is {size} bytes, over the limit of {limits.max_context_bytes} bytes"
        )
    return _struct(struct, 1, limits.max_context_depth)


def _too_deep(limit: int) -> RequestError:
    return RequestError(f"context nests deeper than the limit of {limit} levels")


def _struct(struct: Struct, depth: int, limit: int) -> dict[str, Any]:
    if depth > limit:
        raise _too_deep(limit)
    return {key: _value(value, depth, limit) for key, value in struct.fields.items()}


def _list(values: ListValue, depth: int, limit: int) -> list[Any]:
    if depth > limit:
        raise _too_deep(limit)
    return [_value(value, depth, limit) for value in values.values]


def _value(value: Value, depth: int, limit: int) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -_EXACT < number < _EXACT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _struct(value.struct_value, depth + 1, limit)
    if kind == "list_value":
        return _list(value.list_value, depth + 1, limit)
    return None  # null_value, or unset


def set_value(target: Value, value: Any) -> None:
    """Store a JSON-shaped Python value in a ``google.protobuf.Value``."""
    if value is None:
        target.null_value = NULL_VALUE
    elif isinstance(value, bool):  # before int: bool is an int
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, Mapping):
        fill_struct(target.struct_value, value)
    elif isinstance(value, Sequence):
        target.list_value.SetInParent()
        for item in value:
            set_value(target.list_value.values.add(), item)
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


def fill_struct(target: Struct, value: Mapping[str, Any]) -> None:
    """Copy a mapping into a Struct, marking it present even when empty."""
    target.SetInParent()
    if value:
        target.update(value)


def struct_of(value: Mapping[str, Any]) -> Struct:
    out = Struct()
    if value:
        out.update(value)
    return out


def struct_to_python(struct: Struct) -> dict[str, Any]:
    """A Struct as a dict without limits, for trusted data (responses, in the client)."""
    return _struct(struct, 1, 1 << 30)


def value_to_python(value: Value) -> Any:
    return _value(value, 1, 1 << 30)


# -- enums: flagedge.v1's numbers are the model's packed codes (ReasonCode, ErrorCodeNumber) --

REASON_TO_WIRE: Mapping[Reason, int] = MappingProxyType(
    {Reason(code.name): code.value for code in ReasonCode}
)
REASON_FROM_WIRE: Mapping[int, Reason] = MappingProxyType(
    {code.value: Reason(code.name) for code in ReasonCode}
)
ERROR_TO_WIRE: Mapping[ErrorCode, int] = MappingProxyType(
    {ErrorCode(code.name): code.value for code in ErrorCodeNumber if code.name != "NONE"}
)
ERROR_FROM_WIRE: Mapping[int, ErrorCode] = MappingProxyType(
    {code.value: ErrorCode(code.name) for code in ErrorCodeNumber if code.name != "NONE"}
)
TYPE_TO_WIRE: Mapping[FlagType, int] = MappingProxyType(
    {
        FlagType.BOOLEAN: pb.FLAG_TYPE_BOOLEAN,
        FlagType.STRING: pb.FLAG_TYPE_STRING,
        FlagType.INTEGER: pb.FLAG_TYPE_INTEGER,
        FlagType.FLOAT: pb.FLAG_TYPE_FLOAT,
        FlagType.OBJECT: pb.FLAG_TYPE_OBJECT,
    }
)
TYPE_FROM_WIRE: Mapping[int, FlagType] = MappingProxyType(
    {number: flag_type for flag_type, number in TYPE_TO_WIRE.items()}
)
