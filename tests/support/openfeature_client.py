"""A child process for tests/test_openfeature_rpc.py: the OpenFeature SDK with the flagd provider in
RPC mode, talking to a flagedge server on the port given as argv[1].

It runs in its own process because the provider bundles its own compiled flagd protos, and
one process cannot load two definitions of the same protobuf package.

Protocol on stdout, one JSON object a line: the evaluation results (with the keys of the
configuration_change that follows provider_ready); then, after the next configuration_change
event, the changed keys and a fresh evaluation of static-bool.

The other client scripts beside it (run by path, so this directory is on their sys.path)
import ``details`` and ``connect`` from here.
"""

from __future__ import annotations

import json
import queue
import sys
from typing import Any

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent


def details(d: Any) -> dict[str, Any]:
    return {
        "value": d.value,
        "variant": d.variant,
        "reason": str(d.reason.value if hasattr(d.reason, "value") else d.reason),
        "error": None if d.error_code is None else str(d.error_code.value),
    }


def connect(port: int) -> tuple[Any, list[str], queue.Queue[list[str]]]:
    """The SDK's client once the RPC provider on ``port`` is ready; the keys of the flush
    that follows provider_ready (flagedge names every flag as changed right after it, as a
    reconnect flush); and the queue of every later change's keys."""
    changes: queue.Queue[list[str]] = queue.Queue()

    def on_change(event: EventDetails) -> None:
        changes.put(list(event.flags_changed or []))

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    api.set_provider_and_wait(
        FlagdProvider(host="127.0.0.1", port=port, resolver_type=ResolverType.RPC, deadline_ms=5000)
    )
    flushed = changes.get(timeout=60)
    return api.get_client(), flushed, changes


def main() -> None:
    client, flushed, changes = connect(int(sys.argv[1]))
    blue = EvaluationContext(targeting_key="u1", attributes={"email": "me@example.com"})
    results = {
        "boolean": details(client.get_boolean_details("static-bool", False)),
        "boolean-cached": details(client.get_boolean_details("static-bool", False)),
        "string": details(client.get_string_details("targeted-string", "none")),
        "string-targeted": details(client.get_string_details("targeted-string", "none", blue)),
        "integer": details(
            client.get_integer_details("int-flag", 0, EvaluationContext(attributes={"want": "pi"}))
        ),
        "float": details(client.get_float_details("float-flag", 0.0)),
        "object": details(client.get_object_details("object-flag", {})),
        "disabled": details(client.get_boolean_details("disabled-flag", True)),
        "no-default": details(client.get_string_details("no-default", "code-default")),
        "missing": details(client.get_boolean_details("nope", False)),
        "mismatch": details(client.get_boolean_details("targeted-string", False)),
        "parse-error": details(client.get_boolean_details("bad-rule", False)),
    }
    results["flushed"] = sorted(flushed)
    print(json.dumps(results), flush=True)
    changed = changes.get(timeout=60)
    after = details(client.get_boolean_details("static-bool", False))
    print(json.dumps({"changed": sorted(changed), "after": after}), flush=True)
    api.shutdown()


if __name__ == "__main__":
    main()
