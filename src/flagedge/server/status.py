"""The one place where failures become gRPC status codes.

Servicers never pick a status code themselves. They raise, and the wrappers here turn the
exception into a status:

    RequestError                   INVALID_ARGUMENT  (limits, malformed input, bad selector)
    FlagdError(ErrorCode)          the flagd table below (docs/flagd-compat.md section 1.6)
    DeadlineExpired                DEADLINE_EXCEEDED
    NotReady                       UNAVAILABLE (no snapshot loaded yet)
    Unauthenticated                UNAUTHENTICATED, with no detail
    PermissionDenied               PERMISSION_DENIED
    anything else                  INTERNAL, logged with its traceback

The flagd message texts are flagd's ``model.ReadableErrorMessage`` strings, matched exactly
because clients and conformance suites compare them.

Requests arrive here already decoded by :func:`deserializer`, which turns undecodable or
oversized bytes into a :class:`Rejected` marker instead of letting grpc answer INTERNAL; the
wrappers turn that marker into INVALID_ARGUMENT like any other bad request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError

from flagedge.errors import (
    DeadlineExpired,
    FlagdError,
    NotReady,
    PermissionDenied,
    RequestError,
    Unauthenticated,
)
from flagedge.model import ErrorCode
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
    return grpc.StatusCode.INTERNAL, "internal error"


@dataclass(frozen=True, slots=True)
class Rejected:
    """What :func:`deserializer` yields for bytes it will not hand to a servicer."""

    message: str


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
                f"request message is {len(data)} bytes, over the limit of {max_bytes} bytes"
            )
        try:
            return message_type.FromString(data)
        except DecodeError:
            return Rejected(f"request is not a valid {name} message")

    return parse


def _accept(request: Req | Rejected) -> Req:
    if isinstance(request, Rejected):
        raise RequestError(request.message)
    return request


async def _abort(context: Context, exc: BaseException) -> None:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("unexpected error while serving a call", exc_info=exc)
    await context.abort(code, message)


def unary(
    handler: Callable[[Req, Context], Resp],
) -> Callable[[Req | Rejected, Context], Awaitable[Resp]]:
    """Wrap a synchronous unary handler: evaluation is CPU work with nothing to await, and an
    ``async def`` wrapper keeps grpc.aio from sending it to a thread pool."""

    async def call(request: Req | Rejected, context: Context) -> Resp:
        try:
            return handler(_accept(request), context)
        except grpc.aio.AbortError:
            raise  # the handler set its status itself (context.abort)
        except Exception as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    return call


def server_stream(
    handler: Callable[[Req, Context], AsyncIterator[Resp]],
) -> Callable[[Req | Rejected, Context], AsyncIterator[Resp]]:
    async def call(request: Req | Rejected, context: Context) -> AsyncIterator[Resp]:
        try:
            async for item in handler(_accept(request), context):
                yield item
        except grpc.aio.AbortError:
            raise  # the handler set its status itself (a stream deadline, say)
        except Exception as exc:
            await _abort(context, exc)

    return call


def bidi_stream(
    handler: Callable[[Req, Context], Resp],
) -> Callable[[AsyncIterator[Req | Rejected], Context], AsyncIterator[Resp]]:
    """One response per request message; the first bad message ends the call."""

    async def call(
        requests: AsyncIterator[Req | Rejected], context: Context
    ) -> AsyncIterator[Resp]:
        try:
            async for request in requests:
                yield handler(_accept(request), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return call
