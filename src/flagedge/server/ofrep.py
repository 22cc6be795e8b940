"""OFREP, the OpenFeature Remote Evaluation Protocol (open-feature/protocol
``service/openapi.yaml`` 0.3.0 and ``service/event-streams.yaml``; docs/flagd-compat.md §6).

    POST /ofrep/v1/evaluate/flags/{key}   one flag:  200 {key, value, reason, variant, metadata}
                                          404 FLAG_NOT_FOUND; 400 PARSE_ERROR, INVALID_CONTEXT,
                                          GENERAL
    POST /ofrep/v1/evaluate/flags         every flag the caller may see: 200 {flags, metadata,
                                          eventStreams} with an ETag; If-None-Match equal to
                                          it: 304, no body
    GET  /ofrep/v1/events                 server-sent events: ``refetchEvaluation`` (with the
                                          new configuration etag) whenever a change touches a
                                          flag the caller may see

Requests carry no type, so a value goes out as the definitions hold it and the provider
checks its type. A success always carries ``variant`` (null when there is none: the Python
provider reads it unconditionally); a code default (no defaultVariant, a disabled flag)
carries no ``value``.

The bulk ETag is a digest of what the answers depend on: the configuration (definitions,
overrides, bucketing scheme), the caller (which flags it may see), the request body as sent
(the context), and the current second when some rule reads ``$flagd.timestamp``. A 304 is
decided from those alone, before the body is parsed or a flag evaluated.

Hot path of a single-flag call: admit (no-op without tokens or a rate) -> read the body ->
parse -> ``snap.evaluate`` -> the success body, serialised once per prebuilt Resolution and
reused (Resolutions are shared values made at compile time; the cache is per snapshot).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

from flagedge.auth import ANONYMOUS, Identity
from flagedge.definitions import quote
from flagedge.errors import PermissionDenied, Unauthenticated
from flagedge.metrics import ServerMetrics
from flagedge.model import ErrorCode, Resolution
from flagedge.server.events import Change, ChangeHub, Mailbox, Shutdown
from flagedge.server.http import (
    BodyError,
    HttpLimits,
    RateLimit,
    Routes,
    buffered_body,
    internal_error,
    json_response,
    read_body,
)
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.wire import Limits

FLAG_PATH: Final = "/ofrep/v1/evaluate/flags/"
BULK_PATH: Final = "/ofrep/v1/evaluate/flags"
EVENTS_PATH: Final = "/ofrep/v1/events"
KEEPALIVE: Final = 15.0  # seconds between SSE comments: proxies close silent streams
INACTIVITY_DELAY: Final = 120  # eventStreams.inactivityDelaySec: the spec's default, stated

# authorize(Authorization header, X-API-Key header) -> Identity, or Unauthenticated /
# PermissionDenied (serve/security.py's Security.authorize with the evaluate scope).
Authorize = Callable[[str | None, str | None], Identity]

_CACHE_LIMIT: Final = 65_536  # serialised answers kept per snapshot
_FLAG_PATH_LENGTH: Final = len(FLAG_PATH)
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_perf_counter = time.perf_counter


class Refused(Exception):
    """A request answered with an OFREP failure body instead of an evaluation."""

    def __init__(
        self,
        status: int,
        code: ErrorCode | None,
        details: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(details)
        self.status = status
        self.code = code
        self.details = details
        self.headers = headers

    def response(self, key: str | None = None) -> web.Response:
        body: dict[str, Any] = {}
        if key is not None:
            body["key"] = key
        if self.code is not None:
            body["errorCode"] = self.code.value
        body["errorDetails"] = self.details
        return json_response(self.status, body, self.headers)


def parse_context(body: bytes, limits: Limits) -> dict[str, Any]:
    """The ``context`` of an OFREP request body; Refused (400) with the spec's error code.

    An empty body, ``{}`` and ``{"context": null}`` mean an empty context (the Python
    provider sends ``{}`` when there is no evaluation context).
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():
            return {}
        raise Refused(400, ErrorCode.PARSE_ERROR, f"the body is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise Refused(
            400, ErrorCode.PARSE_ERROR, 'the body must be a JSON object: {"context": {...}}'
        )
    context = data.get("context")
    if type(context) is not dict:
        if context is None:
            return {}
        raise Refused(
            400,
            ErrorCode.INVALID_CONTEXT,
            f"the context must be a JSON object, not {_json_kind(context)}",
        )
    if len(body) > limits.max_context_bytes:
        raise Refused(
            400,
            ErrorCode.INVALID_CONTEXT,
            f"the context is {len(body)} bytes, over the limit of {limits.max_context_bytes} bytes",
        )
    # Counting brackets is C-fast and bounds the depth; walk only when it could be too deep.
    if body.count(b"{") + body.count(b"[") > limits.max_context_depth and _too_deep(
        context, limits.max_context_depth
    ):
        raise Refused(
            400,
            ErrorCode.INVALID_CONTEXT,
            f"the context nests deeper than the limit of {limits.max_context_depth} levels",
        )
    # A missing or non-string targetingKey is evaluated as flagd evaluates it (a fractional
    # rule then gives its default), so TARGETING_KEY_MISSING is never sent: the golden
    # cases pin flagd's answers for integer and boolean keys.
    return context


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "null"


def _too_deep(context: dict[str, Any], limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(context, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children: Iterable[Any] = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def success(resolution: Resolution) -> dict[str, Any]:
    """An evaluationSuccess; no ``value`` when the caller's code default applies."""
    out: dict[str, Any] = {"key": resolution.key}
    if resolution.value is not None:
        out["value"] = resolution.value
    out["reason"] = resolution.reason.value
    out["variant"] = resolution.variant
    out["metadata"] = dict(resolution.metadata)
    return out


def failure(resolution: Resolution) -> dict[str, Any]:
    """An evaluationFailure (or flagNotFound): key, errorCode, errorDetails, metadata."""
    code = resolution.error_code or ErrorCode.GENERAL
    out: dict[str, Any] = {
        "key": resolution.key,
        "errorCode": code.value,
        "errorDetails": resolution.error_message or _DETAILS.get(code, "the flag failed"),
    }
    if resolution.metadata:
        out["metadata"] = dict(resolution.metadata)
    return out


_DETAILS: Final = {
    ErrorCode.FLAG_NOT_FOUND: "the flag was not found",
    ErrorCode.PARSE_ERROR: "the flag's targeting rule could not be evaluated",
    ErrorCode.GENERAL: "the flag could not be evaluated",
}


class _Configuration:
    """What OFREP derives once per snapshot: its etag, whether answers depend on the clock,
    serialised answers, and the keys each set of flag prefixes may see."""

    __slots__ = ("bodies", "etag", "fingerprint", "metadata", "snapshot", "timed", "visible")

    def __init__(self, snapshot: Snapshot, document_digest: bytes, timed: bool) -> None:
        overrides = orjson.dumps(
            {k: v.to_json() for k, v in snapshot.overrides.items()}, option=orjson.OPT_SORT_KEYS
        )
        digest = hashlib.blake2b(document_digest, digest_size=16)
        digest.update(snapshot.scheme.value.encode())
        digest.update(overrides)
        self.snapshot = snapshot
        self.fingerprint = digest.digest()
        self.etag = base64.urlsafe_b64encode(self.fingerprint).rstrip(b"=").decode()
        self.timed = timed
        self.metadata = dict(snapshot.metadata)
        self.bodies: dict[int, tuple[Resolution, bytes]] = {}
        self.visible: dict[tuple[str, ...], list[str]] = {}

    def keys_for(self, identity: Identity) -> list[str] | None:
        """The keys ``identity`` may see, in definition order; None: every flag."""
        if identity.unrestricted:
            return None
        keys = self.visible.get(identity.flags)
        if keys is None:
            keys = [k for k in self.snapshot.keys if identity.sees(k)]
            self.visible[identity.flags] = keys
        return keys


def _document_digest(document: Mapping[str, Any]) -> tuple[bytes, bool]:
    """A digest of a definitions document, and whether any rule reads ``$flagd`` beyond its
    flagKey (its timestamp: answers may then change with the clock alone)."""
    try:
        data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON-shaped (never from a validated source): never equal
        data = repr(id(document)).encode()
    timed = b"$flagd" in data.replace(b'"$flagd.flagKey"', b"")
    return hashlib.blake2b(data, digest_size=16).digest(), timed


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (quoted; weak or strong; a list)."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


def unix_now() -> int:
    return int(time.time())


class OfrepService:
    """The three OFREP endpoints over one SnapshotHolder."""

    def __init__(
        self,
        holder: SnapshotHolder,
        hub: ChangeHub,
        *,
        http: HttpLimits | None = None,
        limits: Limits | None = None,
        authorize: Authorize | None = None,
        rate: RateLimit | None = None,
        metrics: ServerMetrics | None = None,
        clock: Callable[[], int] = unix_now,
    ) -> None:
        self.holder = holder
        self.hub = hub
        self.http = http or HttpLimits()
        self.limits = limits or Limits()
        self.authorize = authorize
        self.rate = rate
        self.metrics = metrics or ServerMetrics()
        self.clock = clock
        self.streams = 0
        self._open = authorize is None and rate is None
        self._record = self.metrics.evaluations.record
        self._record_many = self.metrics.evaluations.record_many
        self._configuration: _Configuration | None = None
        self._announced: tuple[Change, bytes] | None = None
        self._document: tuple[Mapping[str, Any], bytes, bool] | None = None
        self._observe_one = self.metrics.recorder("ofrep/EvaluateFlag")
        self._observe_all = self.metrics.recorder("ofrep/EvaluateFlags")
        self.metrics.streams.setdefault("ofrep/events", 0)

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", BULK_PATH, self.evaluate_flags)
        routes.add_prefix("POST", FLAG_PATH, self.evaluate_flag, guarded=True)
        routes.add("GET", EVENTS_PATH, self.events)

    # -- shared steps --------------------------------------------------------------------

    def admit(self, request: BaseRequest) -> Identity:
        """The caller, allowed to evaluate and within its rate; Refused otherwise."""
        identity = ANONYMOUS
        if self.authorize is not None:
            headers = request.headers
            try:
                identity = self.authorize(headers.get("Authorization"), headers.get("X-API-Key"))
            except Unauthenticated:
                raise Refused(
                    401,
                    None,
                    "a valid token is needed: Authorization: Bearer TOKEN or X-API-Key: TOKEN",
                    {"WWW-Authenticate": "Bearer"},
                ) from None
            except PermissionDenied:
                raise Refused(403, None, "this token may not evaluate flags") from None
        if self.rate is not None:
            wait = self.rate.check(identity.name, time.monotonic())
            if wait > 0:
                seconds = max(1, int(wait + 0.999))
                raise Refused(
                    429,
                    ErrorCode.GENERAL,
                    f"over the rate of {self.rate.rate:g} calls per second for "
                    f"{identity.name}; retry in {seconds} s",
                    {"Retry-After": str(seconds)},
                )
        return identity

    async def body(self, request: BaseRequest) -> bytes:
        try:
            return await read_body(request, self.http)
        except BodyError as exc:
            raise Refused(exc.status, None, exc.message) from None

    def configuration(self) -> _Configuration:
        snap = self.holder.current
        if snap is None:
            raise Refused(
                503, ErrorCode.GENERAL, "no flag definitions loaded yet", {"Retry-After": "1"}
            )
        config = self._configuration
        if config is not None and config.snapshot is snap:
            return config
        document = self._document
        if document is None or document[0] is not snap.document:
            # A kill switch keeps the document object: only a new document is hashed again.
            digest, timed = _document_digest(snap.document)
            document = self._document = (snap.document, digest, timed)
        config = self._configuration = _Configuration(snap, document[1], document[2])
        return config

    # -- one flag ------------------------------------------------------------------------

    async def evaluate_flag(self, request: BaseRequest) -> web.StreamResponse:
        # raw_path: the request line's own string (request.path decodes through yarl).
        key = request.raw_path[_FLAG_PATH_LENGTH:]
        if "?" in key:
            key = key.partition("?")[0]
        if "%" in key:
            key = unquote(key)
        try:
            # Open and unlimited (the default): skip the call, this is the hot path.
            identity = ANONYMOUS if self._open else self.admit(request)
            body = buffered_body(request, self.http)
            if body is None:  # still arriving: wait for it, within the body timeout
                body = await self.body(request)
        except BodyError as exc:
            return Refused(exc.status, None, exc.message).response(key)
        except Refused as refused:
            return refused.response(key)
        except ConnectionError:
            raise  # the client went away while sending: nobody to answer
        except Exception:
            return internal_error(request)
        start = _perf_counter()
        try:
            return self._evaluate_one(key, body, identity)
        except Refused as refused:
            return refused.response(key)
        except Exception:  # registered unguarded (one frame less): the catch-all is here
            return internal_error(request)
        finally:
            self._observe_one(_perf_counter() - start)

    def _evaluate_one(self, key: str, body: bytes, identity: Identity) -> web.Response:
        context = parse_context(body, self.limits)
        snap = self.holder.current
        config = self._configuration
        if config is None or config.snapshot is not snap:
            config = self.configuration()
        if not key:
            raise Refused(404, ErrorCode.FLAG_NOT_FOUND, "no flag key in the path")
        if identity.flags and not identity.sees(key):
            # Hidden exactly as an absent flag: a token learns nothing of others' flags.
            raise Refused(404, ErrorCode.FLAG_NOT_FOUND, f"flag {quote(key)} not found")
        resolution = config.snapshot.evaluate(key, context, self.clock())
        self._record(resolution)
        if resolution.error_code is None:
            cached = config.bodies.get(id(resolution))
            if cached is None or cached[0] is not resolution:
                if len(config.bodies) >= _CACHE_LIMIT:
                    config.bodies.clear()
                cached = config.bodies[id(resolution)] = (
                    resolution,
                    orjson.dumps(success(resolution)),
                )
            return web.Response(body=cached[1], headers=_JSON_HEADERS)
        status = 404 if resolution.error_code is ErrorCode.FLAG_NOT_FOUND else 400
        return json_response(status, failure(resolution))

    # -- every flag ----------------------------------------------------------------------

    def etag(self, config: _Configuration, identity: Identity, body: bytes) -> str:
        digest = hashlib.blake2b(config.fingerprint, digest_size=16)
        # The caller: its name, and its prefixes (which flags it sees; an auth file reload
        # may change them under the same name).
        digest.update("\0".join((identity.name, *identity.flags)).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
        if config.timed:
            digest.update(str(self.clock()).encode())
        digest.update(b"\0")
        digest.update(body)
        return '"' + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() + '"'

    async def evaluate_flags(self, request: BaseRequest) -> web.StreamResponse:
        try:
            identity = self.admit(request)
            body = await self.body(request)
            start = time.perf_counter()
            try:
                return self._evaluate_all(request, body, identity)
            finally:
                self._observe_all(time.perf_counter() - start)
        except Refused as refused:
            return refused.response()

    def _evaluate_all(self, request: BaseRequest, body: bytes, identity: Identity) -> web.Response:
        config = self.configuration()
        etag = self.etag(config, identity, body)
        wanted = request.headers.get("If-None-Match")
        if wanted is not None and etag_matches(wanted, etag):
            return web.Response(status=304, headers={"ETag": etag})
        context = parse_context(body, self.limits)
        snap = config.snapshot
        resolutions = snap.evaluate_all(context, self.clock(), keys=config.keys_for(identity))
        self._record_many(resolutions)
        flags = [failure(r) if r.error_code is not None else success(r) for r in resolutions]
        answer = {
            "flags": flags,
            "metadata": config.metadata,
            "eventStreams": [
                {
                    "type": "sse",
                    "url": f"{request.scheme}://{request.host}{EVENTS_PATH}",
                    "inactivityDelaySec": INACTIVITY_DELAY,
                }
            ],
        }
        return json_response(200, answer, {"ETag": etag})

    # -- change notification -------------------------------------------------------------

    async def events(self, request: BaseRequest) -> web.StreamResponse:
        try:
            identity = self.admit(request)
        except Refused as refused:
            return refused.response()
        if self.streams >= self.http.max_streams:
            return Refused(
                503,
                ErrorCode.GENERAL,
                f"{self.streams} event streams are open, the most this server keeps",
                {"Retry-After": "5"},
            ).response()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        self.streams += 1
        gauge = self.metrics.streams
        gauge["ofrep/events"] += 1
        try:
            with self.hub.subscribe() as queue:
                await response.prepare(request)
                await response.write(b": flagedge OFREP events\nretry: 1000\n\n")
                await self._follow(response, queue, identity)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away (or the server is stopping): nothing to tell
        finally:
            self.streams -= 1
            gauge["ofrep/events"] -= 1
        return response

    async def _follow(
        self, response: web.StreamResponse, queue: Mailbox, identity: Identity
    ) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for (3.11's can swallow a cancellation).
                async with asyncio.timeout(KEEPALIVE):
                    event = await queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if isinstance(event, Shutdown):
                return
            if identity.flags and not any(identity.sees(k) for k in event.changed):
                continue  # nothing this caller may see changed: not announced
            await response.write(self._announcement(event))

    def _announcement(self, change: Change) -> bytes:
        """The SSE event for ``change``, encoded once for every stream that sends it."""
        cached = self._announced
        if cached is not None and cached[0] is change:
            return cached[1]
        config = self.configuration_of(change.current)
        data = orjson.dumps(
            {"type": "refetchEvaluation", "etag": config.etag, "lastModified": unix_now()}
        )
        encoded = b"id: " + config.etag.encode() + b"\nevent: message\ndata: " + data + b"\n\n"
        self._announced = (change, encoded)
        return encoded

    def configuration_of(self, snap: Snapshot) -> _Configuration:
        current = self._configuration
        if current is not None and current.snapshot is snap:
            return current
        if self.holder.current is snap:
            return self.configuration()
        digest, timed = _document_digest(snap.document)  # an older one, passed already
        return _Configuration(snap, digest, timed)
