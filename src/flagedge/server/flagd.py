"""flagd's evaluation services, v2 and v1, over the core (docs/flagd-compat.md section 1).

Both versions share :class:`FlagdCore`: select, evaluate, raise :class:`FlagdError` for the
cases flagd answers with a status. They differ only in how a successful resolution with no
value goes on the wire:

    case (Resolution)                     v2                          v1
    value present                         value + variant             value + variant
    DISABLED, no value                    reason only                 zero value, variant ""
    DEFAULT, no value (no defaultVariant) reason only                 NOT_FOUND "Flag not found"

Servicer methods are synchronous and thin; status.py wraps them and maps every raise.
A caller limited to some flag prefixes (server/caller.py) resolves against its view of the
snapshot: other flags are FLAG_NOT_FOUND, absent from ResolveAll and never announced on its
EventStream. A value the wire cannot carry (text with a lone surrogate, in a snapshot a
library caller built) makes its own resolve GENERAL and is left out of ResolveAll; event
data is cleaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol, TypeVar

import grpc

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge.errors import FlagdError
from flagedge.metrics import EvaluationCounter
from flagedge.model import ErrorCode, FlagType, Reason, Resolution, ValueKind
from flagedge.server import status
from flagedge.server.caller import CALLER, Evaluating, Views, metadata_of
from flagedge.server.events import ChangeHub, Shutdown
from flagedge.server.selector import ALL, Selection, selection_from_metadata
from flagedge.snapshot import SnapshotHolder
from flagedge.wire import Limits, clean_value, context_to_dict, fill_struct

Context = grpc.aio.ServicerContext[Any, Any]
Clock = Callable[[], int]

_INT64 = 2**63
# flagd's words when its --stream-deadline ends a stream (with DEADLINE_EXCEEDED).
STREAM_DEADLINE = "stream closed due to server-side timeout"


def unix_now() -> int:
    return int(time.time())


class _Request(Protocol):
    @property
    def flag_key(self) -> str: ...
    @property
    def context(self) -> Any: ...


class FlagdCore(Evaluating):
    """What v1 and v2 share: selection, evaluation, metadata layering, events."""

    def __init__(
        self,
        holder: SnapshotHolder,
        hub: ChangeHub,
        limits: Limits,
        *,
        source: str | None = None,
        clock: Clock = unix_now,
        keepalive_interval: float = 20.0,
        stream_deadline: float = 0.0,
        evaluations: EvaluationCounter | None = None,
        views: Views | None = None,
    ) -> None:
        super().__init__(holder, hub, limits, clock=clock, evaluations=evaluations, views=views)
        self.source = source
        self.keepalive_interval = keepalive_interval
        self.stream_deadline = stream_deadline

    def resolve(
        self, request: _Request, context: Context, flag_type: FlagType
    ) -> tuple[Resolution, Selection]:
        selection = selection_from_metadata(metadata_of(context))
        snap = self.views.of(status.current(self.holder))
        key = request.flag_key
        if selection is not ALL:
            flag = snap.flags.get(key)
            if flag is None or not selection.admits(flag.metadata, self.source):
                raise FlagdError(ErrorCode.FLAG_NOT_FOUND)
        resolution = snap.evaluate(
            key, context_to_dict(request.context, self.limits), self.clock(), flag_type
        )
        self._count(resolution)
        if resolution.error_code is not None:
            raise FlagdError(resolution.error_code)
        return resolution, selection

    @staticmethod
    def metadata(resolution: Resolution, selection: Selection) -> Mapping[str, Any]:
        """Selector reflection, overlaid by the flag's (already set-merged) metadata."""
        if not selection.reflection:
            return resolution.metadata
        return {**selection.reflection, **resolution.metadata}

    async def events(self, context: Context) -> AsyncIterator[tuple[str, Mapping[str, Any]]]:
        """(type, data) pairs for EventStream, in flagd's vocabulary."""
        selection = selection_from_metadata(metadata_of(context))
        who = CALLER.get()
        with self.hub.subscribe() as queue:
            yield "provider_ready", {}
            # Then name every flag as changed. Providers cache STATIC answers until an event
            # names the flag, and reconnect after a gap (12 s by default) in which changes
            # went unheard; without this a kill switch flipped in that gap never reaches
            # them. On a first connection the cache is empty and the event costs nothing.
            snap = self.holder.current
            if snap is not None:
                snap = self.views.of(snap)
                everything = {
                    key: {"type": "update"}
                    for key in snap.keys
                    if self._selected(selection, snap.flags.get(key))
                }
                if everything:
                    yield "configuration_change", {"flags": everything}
            loop = asyncio.get_running_loop()
            ends = loop.time() + self.stream_deadline if self.stream_deadline > 0 else None
            while True:
                wait = self.keepalive_interval
                if ends is not None:
                    if loop.time() >= ends:
                        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, STREAM_DEADLINE)
                    wait = min(wait, ends - loop.time())
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the
                    # cancellation of a call that ends just as an event arrives.
                    async with asyncio.timeout(wait):
                        event = await queue.get()
                except TimeoutError:
                    if ends is None or loop.time() < ends:
                        yield "keep_alive", {}
                    continue
                if isinstance(event, Shutdown):
                    yield "provider_shutdown", {}
                    return
                flags = {
                    key: {"type": event.kind(key)}
                    for key in sorted(event.changed)
                    if who.sees(key)
                    and (
                        (
                            event.previous
                            and self._selected(selection, event.previous.flags.get(key))
                        )
                        or self._selected(selection, event.current.flags.get(key))
                    )
                }
                if flags:
                    yield "configuration_change", {"flags": flags}

    def _selected(self, selection: Selection, flag: Any) -> bool:
        if flag is None:
            return False
        return selection is ALL or selection.admits(flag.metadata, self.source)


# Value conversions: the core already checked the flag's kind against the requested type, so
# a failure here means a value the wire type cannot carry (an int64 overflow, a non-object
# "object"): flagd's catch-all GENERAL.
def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise FlagdError(ErrorCode.GENERAL)


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise FlagdError(ErrorCode.GENERAL)


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise FlagdError(ErrorCode.GENERAL)


def _int(value: Any) -> int:
    """flagd evaluates ResolveInt as float64 and truncates; the core truncates already."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = int(value)
        if -_INT64 <= number < _INT64:
            return number
    raise FlagdError(ErrorCode.GENERAL)


def _object(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    raise FlagdError(ErrorCode.GENERAL)


class _ScalarResponse(Protocol):
    reason: str
    variant: str

    @property
    def metadata(self) -> Any: ...


R = TypeVar("R", bound=_ScalarResponse)


def _reply(
    response: R, resolution: Resolution, selection: Selection, *, v1_rules: bool
) -> R | None:
    """Fill reason, variant and metadata; None when the value is absent (caller decides)."""
    if resolution.value is None and v1_rules and resolution.reason is not Reason.DISABLED:
        # A flag with no defaultVariant: v1 keeps flagd's pre-0.14 answer.
        raise FlagdError(ErrorCode.FLAG_NOT_FOUND)
    response.reason = resolution.reason.value
    if resolution.variant:
        response.variant = resolution.variant
    fill_struct(response.metadata, FlagdCore.metadata(resolution, selection))
    return response if resolution.value is not None else None


def _resolve_method(
    flag_type: FlagType, response_type: Callable[[], Any], *, v1_rules: bool
) -> Callable[[Any, Any, Context], Any]:
    """One Resolve<Type> RPC: evaluate, then set the value the wire type carries.

    The five methods of both versions differ only in the requested type, the response
    message and whether v1's rules for absent values apply, so they are made here.
    """
    set_value = _SETTERS[flag_type]
    is_object = flag_type is FlagType.OBJECT

    def method(self: _Servicer, request: Any, context: Context) -> Any:
        resolution, selection = self.core.resolve(request, context, flag_type)
        out = response_type()
        try:
            if _reply(out, resolution, selection, v1_rules=v1_rules) is not None:
                set_value(out, resolution.value)
            elif v1_rules and is_object:
                out.value.SetInParent()  # v1's zero value for an object is an empty Struct
        except (UnicodeError, ValueError):  # a value the wire cannot carry
            raise FlagdError(ErrorCode.GENERAL) from None
        return out

    method.__name__ = f"Resolve{flag_type.value.title()}"
    return method


def _set_object(out: Any, value: Any) -> None:
    fill_struct(out.value, _object(value))


def _setter(convert: Callable[[Any], Any]) -> Callable[[Any, Any], None]:
    def set_value(out: Any, value: Any) -> None:
        out.value = convert(value)

    return set_value


_SETTERS: dict[FlagType, Callable[[Any, Any], None]] = {
    FlagType.BOOLEAN: _setter(_bool),
    FlagType.STRING: _setter(_str),
    FlagType.FLOAT: _setter(_float),
    FlagType.INTEGER: _setter(_int),
    FlagType.OBJECT: _set_object,
}


# The flagd Resolve<Type> methods, by the name the protos give each type.
RESOLVE_TYPES: Final = {
    "Boolean": FlagType.BOOLEAN,
    "String": FlagType.STRING,
    "Float": FlagType.FLOAT,
    "Int": FlagType.INTEGER,
    "Object": FlagType.OBJECT,
}


class _Servicer:
    """A flagd evaluation service. A subclass names the proto ``module`` its answers are
    made of and whether ``v1_rules`` apply; its Resolve<Type> methods are made from those."""

    _event: Callable[..., Any]  # the module's EventStreamResponse

    def __init_subclass__(cls, *, module: Any, v1_rules: bool) -> None:
        super().__init_subclass__()
        cls._event = module.EventStreamResponse
        for name, flag_type in RESOLVE_TYPES.items():
            response_type = getattr(module, f"Resolve{name}Response")
            setattr(
                cls, f"Resolve{name}", _resolve_method(flag_type, response_type, v1_rules=v1_rules)
            )

    def __init__(self, core: FlagdCore) -> None:
        self.core = core

    async def EventStream(self, request: Any, context: Context) -> AsyncIterator[Any]:
        async for kind, data in self.core.events(context):
            message = self._event(type=kind)
            _fill_event(message.data, data)
            yield message


class FlagdV2Servicer(_Servicer, module=v2, v1_rules=False):
    """``flagd.evaluation.v2.Service``: value and variant unset when the code default applies."""


class FlagdV1Servicer(_Servicer, module=v1, v1_rules=True):
    """``flagd.evaluation.v1.Service``: zero values instead of absent ones, plus ResolveAll."""

    def ResolveAll(self, request: v1.ResolveAllRequest, context: Context) -> v1.ResolveAllResponse:
        """Every selected flag, typed by its variants' kind; integers travel as doubles.
        Errored flags are included with reason ERROR and a zero value; flags that fall back
        to the client's default (no defaultVariant) are left out, as flagd does on v1."""
        core = self.core
        selection = selection_from_metadata(metadata_of(context))
        snap = core.views.of(status.current(core.holder))
        keys = [
            key
            for key in snap.keys
            if selection is ALL or selection.admits(snap.flags[key].metadata, core.source)
        ]
        user_context = context_to_dict(request.context, core.limits)
        out = v1.ResolveAllResponse()
        fill_struct(out.metadata, selection.reflection)
        resolutions = snap.evaluate_all(user_context, core.clock(), keys=keys)
        core.evaluations.record_many(resolutions)
        for resolution in resolutions:
            if resolution.value is None and resolution.reason is Reason.DEFAULT:
                continue
            flag = snap.flags[resolution.key]
            try:
                entry = out.flags[resolution.key]
                entry.reason = resolution.reason.value
                entry.variant = resolution.variant or ""
                _set_any(entry, flag.kind, resolution.value)
                fill_struct(entry.metadata, FlagdCore.metadata(resolution, selection))
            except (UnicodeError, ValueError):  # left out: one flag cannot fail the rest
                with contextlib.suppress(UnicodeError, ValueError, KeyError):
                    del out.flags[resolution.key]
        return out


def _fill_event(target: Any, data: Mapping[str, Any]) -> None:
    try:
        fill_struct(target, data)
    except (UnicodeError, ValueError):  # a flag key the wire cannot carry: cleaned
        target.Clear()
        fill_struct(target, clean_value(data))


def _set_any(entry: v1.AnyFlag, kind: ValueKind, value: Any) -> None:
    """Set AnyFlag's value oneof by the flag's kind; an absent value sets that kind's zero."""
    if kind is ValueKind.BOOLEAN:
        entry.bool_value = value is True
    elif kind is ValueKind.STRING:
        entry.string_value = value if isinstance(value, str) else ""
    elif kind is ValueKind.NUMBER:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        entry.double_value = float(value) if is_number else 0.0
    else:
        fill_struct(entry.object_value, value if isinstance(value, Mapping) else {})
