"""Reaching a target: how to connect (plaintext, TLS, mutual TLS, a token on every call), the
channels the load processes open, and ``probe``: one checked call of a scenario before the
clock starts, which also tells how many evaluations a call carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flagedge.bench.scenarios import SCENARIOS, Workload


class LoadError(Exception):
    """The target cannot run a scenario: unreachable, a method it lacks, an error answer."""


def raw(b: bytes) -> bytes:
    """The (de)serialiser of every call: requests are serialised up front and answers are not
    decoded on the clock."""
    return b


@dataclass(frozen=True, slots=True)
class Secure:
    """How to reach a secured target: TLS (trusting ``ca``, PEM, or the system's roots), a
    client certificate for mutual TLS, the name the server's certificate must carry when it
    is not the target's host, and a token sent on every call. The default: plaintext."""

    tls: bool = False
    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        # Per-call metadata, not call credentials: grpc runs a call-credentials plugin in a
        # Python thread per call, which would cost the generator more than the call.
        return None if self.token is None else (("authorization", f"Bearer {self.token}"),)

    def options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []

    def credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)


def channel_options(secure: Secure | None = None) -> list[tuple[str, Any]]:
    # A local subchannel pool: without it grpc shares one connection among the channels.
    return [("grpc.use_local_subchannel_pool", 1), *(secure.options() if secure else [])]


def open_channel(target: str, secure: Secure, options: list[tuple[str, Any]]) -> Any:
    import grpc

    if secure.tls:
        return grpc.secure_channel(target, secure.credentials(), options=options)
    return grpc.insecure_channel(target, options=options)


def open_aio_channel(target: str, secure: Secure, options: list[tuple[str, Any]]) -> Any:
    import grpc

    if secure.tls:
        return grpc.aio.secure_channel(target, secure.credentials(), options=options)
    return grpc.aio.insecure_channel(target, options=options)


def probe(
    target: str,
    scenario: str,
    workload: Workload,
    timeout: float = 10.0,
    secure: Secure | None = None,
) -> int:
    """Make one call of ``scenario``, check its answer, return evaluations per call."""
    import grpc

    from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
    from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

    secure = secure or Secure()
    spec = SCENARIOS[scenario]
    payload = workload.request(scenario)
    metadata = secure.metadata
    with open_channel(target, secure, secure.options()) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise LoadError(f"{target}: no gRPC server answered within {timeout:g} s") from None
        try:
            if spec.stream:
                call = channel.stream_stream(
                    spec.method, request_serializer=raw, response_deserializer=raw
                )
                answer = next(iter(call(iter([payload]), timeout=timeout, metadata=metadata)))
            else:
                answer = channel.unary_unary(
                    spec.method, request_serializer=raw, response_deserializer=raw
                )(payload, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            hint = ""
            if code == grpc.StatusCode.UNIMPLEMENTED and spec.api == "flagedge.v1":
                hint = " (a flagd server has only the flagd scenarios: --scenario flagd)"
            flag = workload.flag_of(scenario)
            asked = f" about flag {flag!r}" if flag else ""
            raise LoadError(
                f"{scenario}: asked{asked}, {target} answered {code.name}: {exc.details()}{hint}"
            ) from None
    if scenario == "evaluate":
        result = pb.EvaluateResponse.FromString(answer).result
        if result.error_code:
            raise LoadError(
                f"evaluate: flag {workload.flag!r}: {pb.ErrorCode.Name(result.error_code)} "
                f"{result.error_message} (name one with --flag)"
            )
        return 1
    if scenario == "all":
        return max(1, len(pb.EvaluateAllResponse.FromString(answer).results))
    if scenario == "v1_resolve_all":
        return max(1, len(v1.ResolveAllResponse.FromString(answer).flags))
    if spec.stream or scenario == "batch":
        return len(workload.batch_flags) * workload.batch_contexts
    return 1


@dataclass(frozen=True, slots=True)
class Target:
    """A server to load: its name in the rows, its address, its processes to charge CPU time
    to, and how to reach it."""

    name: str
    address: str
    pids: tuple[int, ...] = ()
    echo: bool = False  # answers with its request: no probe, evaluations counted as the others
    secure: Secure = field(default_factory=Secure)
