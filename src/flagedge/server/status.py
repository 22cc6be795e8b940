"""The one place where failures become gRPC status codes.

Servicers never pick a status code themselves. They raise, and the wrappers here turn the
exception into a status:

    RequestError                   INVALID_ARGUMENT  (limits, malformed input, bad selector)
    FlagdError(ErrorCode)          the flagd table below (docs/flagd-compat.md section 1.6)
    DeadlineExpired                DEADLINE_EXCEEDED
    NotReady                       UNAVAILABLE (no snapshot loaded yet)
    Unauthenticated                UNAUTHENTICATED, with no detail
    PermissionDenied               PERMISSION_DENIED
    TooManyStreams                 RESOURCE_EXHAUSTED (the caller's limit of open streams)
    Overloaded                     RESOURCE_EXHAUSTED (max-streams open; unary calls go on)
    anything else                  INTERNAL, logged with its traceback

A refusal by a limit (LimitExceeded, Overloaded) is logged as one ``limit`` line, at most
one per limit every 10 s per server (Guard.lines, a logs.Throttle), so that abuse cannot
flood the log.

The flagd message texts are flagd's ``model.ReadableErrorMessage`` strings, matched exactly
because clients and conformance suites compare them.

Requests arrive here already decoded by :func:`deserializer`, which turns undecodable or
oversized bytes into a :class:`Rejected` marker instead of letting grpc answer INTERNAL; the
wrappers turn that marker into INVALID_ARGUMENT like any other bad request.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError

from flagedge.errors import (
    DeadlineExpired,
    FlagdError,
    LimitExceeded,
    NotReady,
    Overloaded,
    PermissionDenied,
    RequestError,
    TooManyStreams,
    Unauthenticated,
)
from flagedge.logs import Throttle, event
from flagedge.model import ErrorCode
from flagedge.server.caller import CALLER, METADATA, Gate
from flagedge.snapshot import Snapshot, SnapshotHolder

log = logging.getLogger("flagedge.server")

Req = TypeVar("Req")
Parsed = TypeVar("Parsed", covariant=True)
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


def current(holder: SnapshotHolder) -> Snapshot:
    """The snapshot serving now; NotReady (UNAVAILABLE, which clients retry) before the first."""
    snap = holder.current
    if snap is None:
        raise NotReady
    return snap


FLAGD_STATUS: Mapping[ErrorCode, tuple[grpc.StatusCode, str]] = MappingProxyType(
    {
        ErrorCode.FLAG_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, "Flag not found"),
        ErrorCode.TYPE_MISMATCH: (grpc.StatusCode.INVALID_ARGUMENT, "Type mismatch error"),
        ErrorCode.PARSE_ERROR: (
            grpc.StatusCode.DATA_LOSS,
            "Error parsing input or configuration",
        ),
        ErrorCode.GENERAL: (grpc.StatusCode.UNKNOWN, "General error"),
    }
)
_FLAGD_FALLBACK = (grpc.StatusCode.UNKNOWN, "General error")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failed call answers with."""
    if isinstance(exc, FlagdError):
        return FLAGD_STATUS.get(exc.code, _FLAGD_FALLBACK)
    if isinstance(exc, RequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before evaluation"
    if isinstance(exc, NotReady):
        return grpc.StatusCode.UNAVAILABLE, "no flag definitions loaded yet"
    if isinstance(exc, Unauthenticated):
        return grpc.StatusCode.UNAUTHENTICATED, ""  # no detail: nothing to learn from it
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, "this token lacks the scope this call needs"
    if isinstance(exc, TooManyStreams):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"{exc}; close one first"
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"


@dataclass(frozen=True, slots=True)
class Rejected:
    """What :func:`deserializer` yields for bytes it will not hand to a servicer."""

    message: str
    limit: str | None = None  # the setting it breaks, for an oversized message


class Guard:
    """One server's open streaming calls, against ``max_streams``, and the throttle on its
    ``limit`` log lines. Streams run on the server's one event loop: a plain counter."""

    def __init__(self, max_streams: int, *, log_interval: float = 10.0) -> None:
        self.limit = max_streams
        self.open = 0
        self.lines = Throttle(log_interval)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise Overloaded(
                f"{self.open} streaming calls are open, the server's limit; try again later",
                "max-streams",
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


class _Parser(Protocol[Parsed]):
    def FromString(self, data: bytes, /) -> Parsed: ...


def deserializer(message_type: _Parser[Req], max_bytes: int) -> Callable[[bytes], Req | Rejected]:
    """A request deserializer that reports oversized or garbled input as :class:`Rejected`.

    grpc's own size check answers RESOURCE_EXHAUSTED and a failed parse answers INTERNAL;
    both are the client's fault, so both become INVALID_ARGUMENT with a readable message.
    The transport limit is set above ``max_bytes`` so that this check is the one that fires.
    """
    name = getattr(message_type, "DESCRIPTOR").full_name  # noqa: B009 - typed via Protocol

    def parse(data: bytes) -> Req | Rejected:
        if len(data) > max_bytes:
            return Rejected(
                f"request message is {len(data)} bytes, over the limit of {max_bytes} bytes",
                "max-message-bytes",
            )
        try:
            return message_type.FromString(data)
        except DecodeError:
            return Rejected(f"request is not a valid {name} message")

    return parse


def _accept(request: Req | Rejected) -> Req:
    if isinstance(request, Rejected):
        if request.limit is not None:
            raise LimitExceeded(request.message, request.limit)
        raise RequestError(request.message)
    return request


def _peer(context: Context) -> str:
    try:
        return str(context.peer())
    except Exception:  # a call already torn down
        return ""


async def _abort(
    context: Context, exc: BaseException, method: str = "", guard: Guard | None = None
) -> None:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("unexpected error while serving a call", exc_info=exc)
    elif isinstance(exc, LimitExceeded | Overloaded) and guard is not None:
        left_out = guard.lines.allow(exc.limit)
        if left_out is not None:
            event(
                log,
                logging.WARNING,
                "limit",
                "refused %s (%s): %s%s",
                method or "a call",
                exc.limit,
                message,
                f" ({left_out} more refused by this limit since the last line)" if left_out else "",
                limit=exc.limit,
                method=method,
                peer=_peer(context),
                status=code.name,
                left_out=left_out,
            )
    await context.abort(code, message)


def unary(
    handler: Callable[[Req, Context], Resp],
    method: str = "",
    guard: Guard | None = None,
    gate: Gate | None = None,
) -> Callable[[Req | Rejected, Context], Awaitable[Resp]]:
    """Wrap a synchronous unary handler: evaluation is CPU work with nothing to await, and an
    ``async def`` wrapper keeps grpc.aio from sending it to a thread pool. With a ``gate``
    (an auth file), the caller is checked first, before the request is even looked at."""
    if gate is None:

        async def call(request: Req | Rejected, context: Context) -> Resp:
            try:
                return handler(_accept(request), context)
            except grpc.aio.AbortError:
                raise  # the handler set its status itself (context.abort)
            except Exception as exc:
                await _abort(context, exc, method, guard)
                raise  # unreachable: abort raises

        return call

    check = gate.check

    async def guarded(request: Req | Rejected, context: Context) -> Resp:
        metadata: Any = context.invocation_metadata() or ()  # aio stubs: a Metadata class
        read = METADATA.set(metadata)
        try:
            who = CALLER.set(check(metadata, context.peer))
            try:
                return handler(_accept(request), context)
            finally:
                CALLER.reset(who)
        except grpc.aio.AbortError:
            raise  # the handler set its status itself (context.abort)
        except Exception as exc:
            await _abort(context, exc, method, guard)
            raise  # unreachable: abort raises
        finally:
            METADATA.reset(read)

    return guarded


@contextlib.contextmanager
def _admitted(guard: Guard | None, gate: Gate | None, context: Context) -> Iterator[None]:
    """For a streaming call: a slot of the server's max-streams (``guard``), then the caller
    checked and one of its own stream slots held, as the CALLER of this call's task
    (Gate.admit keeps the METADATA it read). grpc.aio gives every call its own task, so
    neither is reset afterwards (an async generator may be closed from another context,
    where a reset would fail)."""
    with contextlib.nullcontext() if guard is None else guard.admit():
        if gate is None:
            yield
            return
        identity = gate.admit(context)
        with gate.stream(identity, context):
            CALLER.set(identity)
            yield


def server_stream(
    handler: Callable[[Req, Context], AsyncIterator[Resp]],
    method: str = "",
    guard: Guard | None = None,
    gate: Gate | None = None,
) -> Callable[[Req | Rejected, Context], AsyncIterator[Resp]]:
    """Wrap a server-streaming handler; a call past max-streams (``guard``) or past its
    caller's stream limit (``gate``) is refused, RESOURCE_EXHAUSTED, before it starts."""

    async def call(request: Req | Rejected, context: Context) -> AsyncIterator[Resp]:
        try:
            with _admitted(guard, gate, context):
                async for item in handler(_accept(request), context):
                    yield item
        except grpc.aio.AbortError:
            raise  # the handler set its status itself (a stream deadline, say)
        except Exception as exc:
            await _abort(context, exc, method, guard)

    return call


def bidi_stream(
    handler: Callable[[Req, Context], Resp],
    method: str = "",
    guard: Guard | None = None,
    gate: Gate | None = None,
) -> Callable[[AsyncIterator[Req | Rejected], Context], AsyncIterator[Resp]]:
    """One response per request message; the first bad message ends the call. The caller
    is checked once, when the stream opens."""

    async def call(
        requests: AsyncIterator[Req | Rejected], context: Context
    ) -> AsyncIterator[Resp]:
        try:
            with _admitted(guard, gate, context):
                async for request in requests:
                    yield handler(_accept(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, method, guard)

    return call
