"""The assembled gRPC server (flagedge.server.rpc): the standard health service reports
SERVING for the server and each service, and reflection lists the services, so that grpcurl
works without .proto files."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.server import async_test, serving


class TestOperations:
    @async_test
    async def test_health_reports_serving_for_the_server_and_each_service(self) -> None:
        async with serving() as (_, channel):
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", "flagedge.v1.Evaluation", "flagd.evaluation.v2.Service"):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

    @async_test
    async def test_reflection_lists_the_services(self) -> None:
        async with serving() as (_, channel):
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            replies = [r async for r in stub.ServerReflectionInfo(ask())]
        names = {s.name for s in replies[0].list_services_response.service}
        assert {
            "flagedge.v1.Evaluation",
            "flagd.evaluation.v1.Service",
            "flagd.evaluation.v2.Service",
            "grpc.health.v1.Health",
        } <= names
