"""A small typed client for flagedge's native API (``flagedge.v1.Evaluation``).

    with Client("127.0.0.1:8013", channels=4) as client:
        r = client.evaluate("new-checkout", {"targetingKey": "user-1"}, flag_type=FlagType.BOOLEAN)
        batch = client.evaluate_batch(["a", "b"], [{"targetingKey": "u1"}, {"targetingKey": "u2"}])
        batch.value(1, "b")

    async with AsyncClient("127.0.0.1:8013") as client:
        r = await client.evaluate("new-checkout", {...})

    # a secured edge (TLS, and a token when the edge has an auth file)
    creds = channel_credentials(ca=open("ca.pem", "rb").read(), token=os.environ["TOKEN"])
    with Client("edge.internal:8013", credentials=creds) as client: ...

Results use the core's vocabulary (``flagedge.model.Resolution``, ``Reason``, ``ErrorCode``):
evaluation problems come back as data, and only a refused call raises (``grpc.RpcError``).

A pool of ``channels`` channels, each with its own connection (a local subchannel pool, so
grpc does not merge them into one), is used round robin: one HTTP/2 connection is served by
one server worker, so several spread the load over ``serve --workers``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import grpc

from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.model import (
    ErrorCode,
    FlagType,
    Reason,
    Resolution,
)
from flagedge.wire import (
    ERROR_FROM_WIRE,
    REASON_FROM_WIRE,
    TYPE_TO_WIRE,
    struct_of,
    struct_to_python,
    value_to_python,
)

__all__ = ["AsyncClient", "Batch", "Cell", "Change", "Client", "channel_credentials"]

_SERVICE = "/flagedge.v1.Evaluation/"
Context = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Cell:
    """One (context, flag) answer of a batch; ``variant``/``value`` None: use your default."""

    variant: str | None
    value: Any
    reason: Reason
    error_code: ErrorCode | None


@dataclass(frozen=True, slots=True)
class Batch:
    """An EvaluateBatch answer, still packed: cell ``c * F + f`` for context c, flag f."""

    keys: tuple[str, ...]
    variants: tuple[tuple[str, ...], ...]
    values: tuple[tuple[Any, ...], ...]
    variant_index: Sequence[int]
    reasons: bytes
    error_codes: bytes
    contexts: int
    snapshot_version: int
    request_id: int

    def cell(self, context: int, flag: int | str) -> Cell:
        f = self.keys.index(flag) if isinstance(flag, str) else flag
        i = context * len(self.keys) + f
        vi = self.variant_index[i]
        return Cell(
            None if vi < 0 else self.variants[f][vi],
            None if vi < 0 else self.values[f][vi],
            REASON_FROM_WIRE.get(self.reasons[i], Reason.UNKNOWN),
            ERROR_FROM_WIRE.get(self.error_codes[i]),
        )

    def value(self, context: int, flag: int | str, default: Any = None) -> Any:
        found = self.cell(context, flag).value
        return default if found is None else found


@dataclass(frozen=True, slots=True)
class Change:
    """A Watch event. ``initial``: the state when the watch began; drop every cache."""

    snapshot_version: int
    changed_keys: tuple[str, ...]
    initial: bool
    server_id: str


def _evaluate_request(key: str, context: Context | None, flag_type: FlagType | None) -> Any:
    request = pb.EvaluateRequest(flag_key=key)
    if context:
        request.context.update(context)
    if flag_type is not None:
        request.type = TYPE_TO_WIRE[flag_type]  # type: ignore[assignment]
    return request


def _batch_request(keys: Iterable[str], contexts: Iterable[Context], request_id: int = 0) -> Any:
    request = pb.EvaluateBatchRequest(flag_keys=list(keys), request_id=request_id)
    add = request.contexts.add
    for context in contexts:
        struct = add()
        if context:
            struct.update(context)
    return request


def _resolution(result: pb.Result) -> Resolution:
    return Resolution(
        key=result.key,
        value=value_to_python(result.value) if result.HasField("value") else None,
        variant=result.variant if result.HasField("variant") else None,
        reason=REASON_FROM_WIRE.get(result.reason, Reason.UNKNOWN),
        error_code=ERROR_FROM_WIRE.get(result.error_code),
        error_message=result.error_message or None,
        metadata=struct_to_python(result.metadata),
    )


def _batch(response: pb.EvaluateBatchResponse) -> Batch:
    return Batch(
        keys=tuple(t.key for t in response.flags),
        variants=tuple(tuple(t.variants) for t in response.flags),
        values=tuple(tuple(value_to_python(v) for v in t.values) for t in response.flags),
        variant_index=response.variant_index,
        reasons=response.reasons,
        error_codes=response.error_codes,
        contexts=response.context_count,
        snapshot_version=response.snapshot_version,
        request_id=response.request_id,
    )


def _change(event: pb.WatchEvent) -> Change:
    return Change(event.snapshot_version, tuple(event.changed_keys), event.initial, event.server_id)


def _options(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [*options, ("grpc.use_local_subchannel_pool", 1)]


class _Calls:
    """The multicallables of one channel (blocking or asyncio; both have the same methods)."""

    def __init__(self, channel: Any) -> None:
        def method(kind: str, name: str, request: Any, response: Any) -> Any:
            return getattr(channel, kind)(
                _SERVICE + name,
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            )

        self.evaluate = method("unary_unary", "Evaluate", pb.EvaluateRequest, pb.EvaluateResponse)
        self.evaluate_all = method(
            "unary_unary", "EvaluateAll", pb.EvaluateAllRequest, pb.EvaluateAllResponse
        )
        self.evaluate_batch = method(
            "unary_unary", "EvaluateBatch", pb.EvaluateBatchRequest, pb.EvaluateBatchResponse
        )
        self.evaluate_stream = method(
            "stream_stream", "EvaluateStream", pb.EvaluateBatchRequest, pb.EvaluateBatchResponse
        )
        self.watch = method("unary_stream", "Watch", pb.WatchRequest, pb.WatchEvent)


def channel_credentials(
    *,
    ca: bytes | None = None,
    token: str | None = None,
    cert: bytes | None = None,
    key: bytes | None = None,
    local: grpc.LocalConnectionType | None = None,
) -> grpc.ChannelCredentials:
    """Credentials for a secured edge: TLS trusting ``ca`` (PEM; None: the system's roots),
    with ``cert``/``key`` (PEM) for mutual TLS, and ``token`` sent on every call as
    ``authorization: Bearer TOKEN``. ``local`` (UDS for a Unix socket, LOCAL_TCP for
    loopback): no TLS, for a token over a plaintext local port (grpc sends call credentials
    only over a secure or a local channel)."""
    if local is not None:
        transport = grpc.local_channel_credentials(local)
    else:
        transport = grpc.ssl_channel_credentials(ca, key, cert)
    if token is None:
        return transport
    return grpc.composite_channel_credentials(transport, grpc.access_token_call_credentials(token))


class _Pool:
    """The channels both clients share, used round robin; ``_grpc`` (grpc or grpc.aio)
    makes them."""

    _grpc: Any

    def __init__(
        self,
        target: str,
        *,
        channels: int = 1,
        timeout: float | None = 5.0,
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channels = [
            self._grpc.insecure_channel(target, options=_options(options))
            if credentials is None
            else self._grpc.secure_channel(target, credentials, options=_options(options))
            for _ in range(channels)
        ]
        self._calls = [_Calls(c) for c in self._channels]
        self._turn = itertools.count()
        self.timeout = timeout

    def _pick(self) -> _Calls:
        return self._calls[next(self._turn) % len(self._calls)]


class Client(_Pool):
    """Blocking client. ``timeout`` (seconds) is every unary call's deadline;
    ``credentials`` (channel_credentials) for an edge with TLS or tokens."""

    _grpc = grpc

    def evaluate(
        self, key: str, context: Context | None = None, *, flag_type: FlagType | None = None
    ) -> Resolution:
        response = self._pick().evaluate(
            _evaluate_request(key, context, flag_type), timeout=self.timeout
        )
        return _resolution(response.result)

    def evaluate_all(
        self, context: Context | None = None, keys: Iterable[str] = ()
    ) -> list[Resolution]:
        request = pb.EvaluateAllRequest(context=struct_of(context or {}), keys=list(keys))
        response = self._pick().evaluate_all(request, timeout=self.timeout)
        return [_resolution(r) for r in response.results]

    def evaluate_batch(self, keys: Iterable[str], contexts: Iterable[Context]) -> Batch:
        """Empty ``keys``: every flag."""
        response = self._pick().evaluate_batch(_batch_request(keys, contexts), timeout=self.timeout)
        return _batch(response)

    def evaluate_stream(
        self, batches: Iterable[tuple[Iterable[str], Iterable[Context]]]
    ) -> Iterator[Batch]:
        """One streaming call; yields one Batch per (keys, contexts), in order."""
        requests = (_batch_request(k, c, i) for i, (k, c) in enumerate(batches, 1))
        for response in self._pick().evaluate_stream(requests):
            yield _batch(response)

    def watch(self, keys: Iterable[str] = ()) -> Iterator[Change]:
        """Change events until the server shuts down (or the iterator is dropped)."""
        for event in self._pick().watch(pb.WatchRequest(keys=list(keys))):
            yield _change(event)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(_Pool):
    """asyncio client; create it inside a running event loop. ``timeout`` and
    ``credentials`` as for Client."""

    _grpc = grpc.aio

    async def evaluate(
        self, key: str, context: Context | None = None, *, flag_type: FlagType | None = None
    ) -> Resolution:
        response = await self._pick().evaluate(
            _evaluate_request(key, context, flag_type), timeout=self.timeout
        )
        return _resolution(response.result)

    async def evaluate_all(
        self, context: Context | None = None, keys: Iterable[str] = ()
    ) -> list[Resolution]:
        request = pb.EvaluateAllRequest(context=struct_of(context or {}), keys=list(keys))
        response = await self._pick().evaluate_all(request, timeout=self.timeout)
        return [_resolution(r) for r in response.results]

    async def evaluate_batch(self, keys: Iterable[str], contexts: Iterable[Context]) -> Batch:
        response = await self._pick().evaluate_batch(
            _batch_request(keys, contexts), timeout=self.timeout
        )
        return _batch(response)

    async def evaluate_stream(
        self, batches: AsyncIterable[tuple[Iterable[str], Iterable[Context]]]
    ) -> AsyncIterator[Batch]:
        async def requests() -> AsyncIterator[Any]:
            i = 0
            async for keys, contexts in batches:
                i += 1
                yield _batch_request(keys, contexts, i)

        async for response in self._pick().evaluate_stream(requests()):
            yield _batch(response)

    async def watch(self, keys: Iterable[str] = ()) -> AsyncIterator[Change]:
        async for event in self._pick().watch(pb.WatchRequest(keys=list(keys))):
            yield _change(event)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
