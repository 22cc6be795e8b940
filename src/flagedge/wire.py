"""The wire: protobuf <-> Python values, and the enum tables, for the server and the client.

    google.protobuf.Struct / Value  <->  dict / JSON values    (limits applied on the way in)
    Reason, ErrorCode, FlagType     <->  flagedge.v1 enum numbers

Contexts arrive as ``google.protobuf.Struct``. They become plain dicts here, once, so the
core never sees a protobuf type, and here they meet the request limits (Limits: bytes,
depth, keys; a breach is LimitExceeded, INVALID_ARGUMENT). Struct numbers are doubles;
integral ones become ``int`` (below 2**53, where the double is exact) so that targeting sees
``30`` rather than ``30.0``, as flagd's Go formatting would render it when a number is used
as a string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE, ListValue, Struct, Value

from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.errors import LimitExceeded
from flagedge.model import ErrorCode, ErrorCodeNumber, FlagType, Reason, ReasonCode

_EXACT = 2.0**53
# The fewest bytes one key of a Struct takes on the wire (map entry and key tags, lengths,
# an empty Value): a context of S bytes holds at most S / 4 keys, so counting its keys is
# needed only when that could pass the limit.
_MIN_KEY_BYTES = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request, and one connection, may take from the server.

    Request limits (message, context, batch, keys) answer INVALID_ARGUMENT with a message
    naming the limit; ``max_streams`` answers a new streaming call RESOURCE_EXHAUSTED; the
    connection limits are grpc's own (``grpc_options``), enforced by its HTTP/2 transport.
    Each is a setting of config.LIMITS.
    """

    max_message_bytes: int = 4 * 1024 * 1024
    max_batch_cells: int = 250_000
    max_context_depth: int = 32
    max_context_bytes: int = 64 * 1024
    max_context_keys: int = 1_000
    max_keys: int = 10_000  # keys one EvaluateAll, EvaluateBatch or Watch may name
    max_streams: int = 10_000  # open streaming calls in this process
    max_streams_per_connection: int = 1_000
    max_connection_idle: float = 300.0  # seconds; 0: for ever
    keepalive_time: float = 60.0  # seconds of quiet before the server pings; 0: never
    min_ping_interval: float = 10.0
    max_ping_strikes: int = 2  # 0: any number

    def transport_limit(self) -> int:
        """The limit handed to grpc: above ours, so that ours fires first with a clear message
        (grpc's own would answer RESOURCE_EXHAUSTED)."""
        return self.max_message_bytes + max(self.max_message_bytes, 1024 * 1024)

    def grpc_options(self) -> list[tuple[str, int]]:
        """The server's channel arguments for the connection limits."""
        options = [
            ("grpc.max_receive_message_length", self.transport_limit()),
            ("grpc.max_send_message_length", self.transport_limit()),
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
            # A client's keepalive pings: at most one per min_ping_interval, with or without
            # calls in flight (flagd's providers may ping an idle connection); max_ping_strikes
            # pings sooner than that end the connection with GOAWAY "too_many_pings".
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_ping_interval)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.keepalive_permit_without_calls", 1),
            # The server's own pings find peers that vanished without closing (half-open
            # connections): after keepalive_time of quiet, then 20 s for the answer.
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
        if self.keepalive_time > 0:
            options.append(("grpc.keepalive_time_ms", _ms(self.keepalive_time)))
        if self.max_connection_idle > 0:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle)))
        return options


def _ms(seconds: float) -> int:
    return max(1, min(2**31 - 1, round(seconds * 1000)))


def context_to_dict(struct: Struct, limits: Limits) -> dict[str, Any]:
    """A request context as a plain dict, refusing contexts that are too large, too deep or
    that hold too many keys (LimitExceeded)."""
    if not struct.fields:
        return {}
    size = struct.ByteSize()
    if size > limits.max_context_bytes:
        raise LimitExceeded(
            f"context is {size} bytes, over the limit of {limits.max_context_bytes} bytes",
            "max-context-bytes",
        )
    if size > _MIN_KEY_BYTES * limits.max_context_keys:
        keys = _count_keys(struct, limits.max_context_keys)
        if keys > limits.max_context_keys:
            raise LimitExceeded(
                f"context has more than {limits.max_context_keys} keys (counted at every "
                "level), the limit",
                "max-context-keys",
            )
    return _struct(struct, 1, limits.max_context_depth)


def _count_keys(struct: Struct, limit: int) -> int:
    """Keys of ``struct`` at every level, counting no further than just past ``limit``."""
    count = 0
    pending: list[Any] = [struct]
    while pending and count <= limit:
        item = pending.pop()
        if isinstance(item, Struct):
            count += len(item.fields)
            pending.extend(item.fields.values())
        elif isinstance(item, ListValue):
            pending.extend(item.values)
        else:
            kind = item.WhichOneof("kind")
            if kind == "struct_value":
                pending.append(item.struct_value)
            elif kind == "list_value":
                pending.append(item.list_value)
    return count


def _too_deep(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"context nests deeper than the limit of {limit} levels", "max-context-depth"
    )


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


def clean_text(text: str) -> str:
    """``text`` with every character UTF-8 cannot carry (a lone surrogate) replaced by
    U+FFFD. Validation refuses such text in definitions; this keeps an answer that holds
    some anyway (a library caller's own snapshot) from failing every caller."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_value(value: Any) -> Any:
    """A JSON-shaped value with its keys and strings through :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


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
