"""Frozen values shared by every layer: what a flag resolves to, and the closed vocabularies.

The vocabulary is OpenFeature's (reasons, error codes) so that results cross the flagd
wire protocol without translation. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

JsonScalar: TypeAlias = str | int | float | bool | None
MetadataValue: TypeAlias = str | int | float | bool
Metadata: TypeAlias = Mapping[str, MetadataValue]

EMPTY_METADATA: Metadata = MappingProxyType({})


class Reason(StrEnum):
    """Why a flag resolved the way it did (OpenFeature's reasons; flagd emits the first five)."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    ERROR = "ERROR"
    SPLIT = "SPLIT"
    CACHED = "CACHED"
    UNKNOWN = "UNKNOWN"


class ErrorCode(StrEnum):
    """OpenFeature's error codes; a resolution with one of these has reason ERROR."""

    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    PARSE_ERROR = "PARSE_ERROR"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    GENERAL = "GENERAL"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    PROVIDER_NOT_READY = "PROVIDER_NOT_READY"
    PROVIDER_FATAL = "PROVIDER_FATAL"


class ReasonCode(IntEnum):
    """Reasons packed as small integers for the batch API (one byte per cell)."""

    STATIC = 0
    TARGETING_MATCH = 1
    DEFAULT = 2
    DISABLED = 3
    ERROR = 4


# Reasons flagd emits, by their packed number (the batch API and metrics use these).
REASON_CODES: Mapping[Reason, ReasonCode] = MappingProxyType(
    {Reason(code.name): code for code in ReasonCode}
)


class ErrorCodeNumber(IntEnum):
    """Error codes packed as small integers for the batch API; NONE for a success."""

    NONE = 0
    FLAG_NOT_FOUND = 1
    PARSE_ERROR = 2
    TYPE_MISMATCH = 3
    GENERAL = 4


class ValueKind(StrEnum):
    """The one type all of a flag's variants share."""

    BOOLEAN = "boolean"
    STRING = "string"
    NUMBER = "number"
    OBJECT = "object"


class FlagType(StrEnum):
    """The type a caller asks for (OpenFeature's five resolve methods)."""

    BOOLEAN = "boolean"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    OBJECT = "object"


# Which variant kinds each requested type accepts. Integer accepts any number and truncates,
# as flagd does (it evaluates ResolveInt as float64 and converts).
ACCEPTS: Mapping[FlagType, ValueKind] = MappingProxyType(
    {
        FlagType.BOOLEAN: ValueKind.BOOLEAN,
        FlagType.STRING: ValueKind.STRING,
        FlagType.INTEGER: ValueKind.NUMBER,
        FlagType.FLOAT: ValueKind.NUMBER,
        FlagType.OBJECT: ValueKind.OBJECT,
    }
)


class FlagState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class ToggleKind(StrEnum):
    """flagedge's metadata key ``kind``: the four lives a toggle can have."""

    RELEASE = "release"
    EXPERIMENT = "experiment"
    OPS = "ops"
    PERMISSION = "permission"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of one evaluation.

    ``value`` and ``variant`` are None when the caller's code default applies (no
    defaultVariant, a disabled flag, an error). Variants are never JSON null, so None is
    unambiguous. Resolutions are built at compile time and shared: treat them as values.
    """

    key: str
    value: Any
    variant: str | None
    reason: Reason
    error_code: ErrorCode | None = None
    error_message: str | None = None
    metadata: Metadata = field(default_factory=lambda: EMPTY_METADATA)

    def to_json(self) -> dict[str, Any]:
        """The camelCase shape the CLI prints and the docs show."""
        return {
            "key": self.key,
            "value": self.value,
            "variant": self.variant,
            "reason": str(self.reason),
            "errorCode": None if self.error_code is None else str(self.error_code),
            "errorMessage": self.error_message,
            "metadata": dict(self.metadata),
        }


class OverrideKind(StrEnum):
    KILL = "kill"
    ROLLOUT = "rollout"


@dataclass(frozen=True, slots=True)
class Override:
    """An ops override, kept apart from definitions so that a push never undoes a kill.

    KILL with a variant forces that variant (reason DISABLED, value present); KILL with no
    variant turns the flag off (reason DISABLED, no value: the caller's default).
    ROLLOUT serves ``variant`` (reason TARGETING_MATCH) to ``percent`` of targeting keys,
    bucketed with the flag set's fractional scheme, and otherwise evaluates the flag as
    defined; a context without a targeting key is never in the rollout, even at 100%. Like
    a kill, a rollout decides before the definition, so it applies to a disabled flag too.
    """

    kind: OverrideKind
    variant: str | None = None
    percent: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind)}
        if self.variant is not None:
            out["variant"] = self.variant
        if self.percent is not None:
            out["percent"] = self.percent
        return out
