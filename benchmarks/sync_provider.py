"""The in-process provider child of benchmarks/sync_propagation.py: the OpenFeature SDK with
the flagd provider in IN_PROCESS mode, syncing from a flagedge sync port.

It imports nothing of flagedge: the provider bundles its own compiled flagd protos, and one
process cannot load two definitions of the same protobuf package. It waits for changes
instead of polling (two cores cannot spare a spinning poller per provider): on every
configuration change the provider announces, it asks the SDK for the flag, and the first
answer that differs from the last is stamped (CLOCK_MONOTONIC, shared by every process on
the machine), with the moment the message that carried it reached the provider. The
evaluator's store is replaced before the event is emitted, so the stamp is at or after the
moment the provider could first answer the new value.
"""

from __future__ import annotations

import threading
import time
from typing import Any


def run(
    port: int,
    flag: str,
    index: int,
    flips: int,
    seen: Any,
    stamps: Any,
    arrivals: Any,
    stop: Any,
) -> None:
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.contrib.provider.flagd.resolvers.process.connector import grpc_watcher
    from openfeature.event import EventDetails, ProviderEvent

    lock = threading.Lock()
    state: dict[str, Any] = {"last": None, "arrived": 0}

    # The split into hops: stamp each message as the provider's sync thread takes it, before
    # it parses and loads it (the watcher's one entry point for a SyncFlags message).
    handle = grpc_watcher.GrpcWatcher._handle_flag_response

    def stamped(self: Any, response: Any, metadata: Any) -> bool:
        state["arrived"] = time.monotonic_ns()
        return bool(handle(self, response, metadata))

    grpc_watcher.GrpcWatcher._handle_flag_response = stamped

    def on_change(event: EventDetails) -> None:
        with lock:
            value = client.get_boolean_value(flag, True)
            now = time.monotonic_ns()
            k = seen[index]
            if state["last"] is None or k < 0:
                return
            if value != state["last"] and k < flips:
                stamps[index * flips + k] = now
                arrivals[index * flips + k] = state["arrived"]
                seen[index] = k + 1
            state["last"] = value

    api.set_provider_and_wait(
        FlagdProvider(
            host="127.0.0.1",
            port=port,
            resolver_type=ResolverType.IN_PROCESS,
            deadline_ms=30_000,
        )
    )
    client = api.get_client()
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    with lock:
        state["last"] = client.get_boolean_value(flag, True)
        seen[index] = 0  # ready: the value before the first flip is known
    while not stop.value:
        time.sleep(0.05)
    api.shutdown()
