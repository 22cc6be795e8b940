"""flagd's evaluation services over the Connect protocol, JSON unary calls (what flagd serves
on its HTTP port and what its web provider speaks).

    POST /flagd.evaluation.v1.Service/ResolveBoolean     Content-Type: application/json
         (String, Int, Float, Object, All; v2: the same five, no All)
         body: the request message in protobuf's JSON mapping {"flagKey": ..., "context": {...}}
    200  the response message in protobuf's JSON mapping (int64 as a string, absent fields
         left out, as protojson writes them)
    4xx/5xx  Connect's error JSON {"code": "not_found", "message": "Flag not found"}

The servicers are server/flagd.py's, called as gRPC calls them: the same selection
(``Flagd-Selector`` header), evaluation, result table and messages; server/status.py's
mapping gives the gRPC code, and CONNECT_CODES its Connect name and HTTP status.
Server streaming (EventStream) is not served over Connect: use gRPC or OFREP's events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, cast

import grpc
import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest
from google.protobuf import json_format
from google.protobuf.message import Message

from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
from flagedge.auth import ANONYMOUS, Identity
from flagedge.errors import FlagdError, PermissionDenied, Unauthenticated
from flagedge.metrics import ServerMetrics
from flagedge.model import ErrorCode
from flagedge.server import status
from flagedge.server.flagd import RESOLVE_TYPES, FlagdCore, FlagdV1Servicer, FlagdV2Servicer
from flagedge.server.http import BodyError, HttpLimits, RateLimit, Routes, raw_json, read_body
from flagedge.server.selector import HEADER as SELECTOR_HEADER

Authorize = Callable[[str | None, str | None], Identity]

# Connect's name and HTTP status for each gRPC code (connectrpc.com/docs/protocol, "Error
# Codes"); codes flagedge never sends are listed too so that the table is the protocol's.
CONNECT_CODES: Final[Mapping[grpc.StatusCode, tuple[str, int]]] = MappingProxyType(
    {
        grpc.StatusCode.CANCELLED: ("canceled", 499),
        grpc.StatusCode.UNKNOWN: ("unknown", 500),
        grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", 400),
        grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
        grpc.StatusCode.NOT_FOUND: ("not_found", 404),
        grpc.StatusCode.ALREADY_EXISTS: ("already_exists", 409),
        grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", 403),
        grpc.StatusCode.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
        grpc.StatusCode.FAILED_PRECONDITION: ("failed_precondition", 400),
        grpc.StatusCode.ABORTED: ("aborted", 409),
        grpc.StatusCode.OUT_OF_RANGE: ("out_of_range", 400),
        grpc.StatusCode.UNIMPLEMENTED: ("unimplemented", 501),
        grpc.StatusCode.INTERNAL: ("internal", 500),
        grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
        grpc.StatusCode.DATA_LOSS: ("data_loss", 500),
        grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", 401),
    }
)

SERVICES: Final = ("flagd.evaluation.v1.Service", "flagd.evaluation.v2.Service")


class ConnectError(Exception):
    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        headers: Mapping[str, str] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers
        self.http_status = http_status

    def response(self) -> web.Response:
        name, http_status = CONNECT_CODES.get(self.code, ("unknown", 500))
        http_status = self.http_status or http_status
        body: dict[str, Any] = {"code": name}
        if self.message:
            body["message"] = self.message
        return raw_json(http_status, orjson.dumps(body), self.headers)


class _CallContext:
    """What a flagd servicer reads of its gRPC context: the call's metadata."""

    __slots__ = ("_metadata",)

    def __init__(self, metadata: Sequence[tuple[str, str]]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return self._metadata


@dataclass(frozen=True, slots=True)
class _Procedure:
    call: Callable[[Any, Any], Message]
    request: type[Message]
    observe: Callable[[float], None]
    all_flags: bool  # ResolveAll: hide the flags the caller may not see from the answer


class ConnectService:
    def __init__(
        self,
        core: FlagdCore,
        *,
        http: HttpLimits | None = None,
        authorize: Authorize | None = None,
        rate: RateLimit | None = None,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.core = core
        self.http = http or HttpLimits()
        self.authorize = authorize
        self.rate = rate
        metrics = metrics or ServerMetrics()
        self.procedures: dict[str, _Procedure] = {}
        for service, servicer, module in (
            (SERVICES[0], FlagdV1Servicer(core), v1),
            (SERVICES[1], FlagdV2Servicer(core), v2),
        ):
            for kind in (*RESOLVE_TYPES, "All"):
                method = getattr(servicer, f"Resolve{kind}", None)
                if method is None:
                    continue  # v2 has no ResolveAll
                path = f"/{service}/Resolve{kind}"
                self.procedures[path] = _Procedure(
                    method,
                    getattr(module, f"Resolve{kind}Request"),
                    metrics.recorder(f"connect{path}"),
                    kind == "All",
                )

    def add_routes(self, routes: Routes) -> None:
        for service in SERVICES:
            routes.add_prefix("POST", f"/{service}/", self.call)

    def admit(self, request: BaseRequest) -> Identity:
        identity = ANONYMOUS
        if self.authorize is not None:
            headers = request.headers
            try:
                identity = self.authorize(headers.get("Authorization"), headers.get("X-API-Key"))
            except (Unauthenticated, PermissionDenied) as exc:
                raise ConnectError(*status.status_for(exc)) from None
        if self.rate is not None:
            wait = self.rate.check(identity.name, time.monotonic())
            if wait > 0:
                seconds = max(1, int(wait + 0.999))
                raise ConnectError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"over the rate of {self.rate.rate:g} calls per second; retry in {seconds} s",
                    {"Retry-After": str(seconds)},
                )
        return identity

    async def call(self, request: BaseRequest) -> web.StreamResponse:
        try:
            procedure = self.procedures.get(request.path)
            if procedure is None:
                # An unknown procedure is an unknown route: 404, which Connect reads as
                # unimplemented (its HTTP-to-code table).
                raise ConnectError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{request.path} is not served over Connect",
                    http_status=404,
                )
            media = request.content_type
            if media != "application/json":
                # Connect's answer to a codec it does not speak: 415, naming the one it does.
                return web.Response(status=415, headers={"Accept-Post": "application/json"})
            identity = self.admit(request)
            try:
                body = await read_body(request, self.http)
            except BodyError as exc:
                code = (
                    grpc.StatusCode.RESOURCE_EXHAUSTED
                    if exc.status == 413
                    else grpc.StatusCode.DEADLINE_EXCEEDED
                )
                return ConnectError(code, exc.message).response()
            start = time.perf_counter()
            try:
                return self._invoke(procedure, request, body, identity)
            finally:
                procedure.observe(time.perf_counter() - start)
        except ConnectError as exc:
            return exc.response()

    def _invoke(
        self, procedure: _Procedure, request: BaseRequest, body: bytes, identity: Identity
    ) -> web.Response:
        message = procedure.request()
        try:
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            raise ConnectError(
                grpc.StatusCode.INVALID_ARGUMENT, f"the body is not a valid request: {exc}"
            ) from None
        selector = request.headers.get(SELECTOR_HEADER)
        context = _CallContext(((SELECTOR_HEADER, selector),) if selector is not None else ())
        try:
            if not procedure.all_flags and not identity.sees(getattr(message, "flag_key", "")):
                raise FlagdError(ErrorCode.FLAG_NOT_FOUND)
            answer = procedure.call(message, cast(Any, context))
        except Exception as exc:
            code, text = status.status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                status.log.exception("unexpected error while serving a Connect call", exc_info=exc)
            raise ConnectError(code, text) from None
        if procedure.all_flags and identity.flags:
            flags = cast(Any, answer).flags
            for key in [k for k in flags if not identity.sees(k)]:
                del flags[key]
        return raw_json(200, orjson.dumps(json_format.MessageToDict(answer)))
