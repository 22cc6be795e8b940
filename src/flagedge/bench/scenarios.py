"""What the load generator asks: the scenarios (one per evaluation method, and the groups of
them ``--scenario`` takes), the flag set a benchmark server serves, and the Workload that
serialises each scenario's request once, before the clock starts."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any

from flagedge.bench.workloads import mixed_context, mixed_doc, mixed_specs, rollout_contexts


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    api: str  # "flagedge.v1", "flagd.v2" or "flagd.v1": what the server must speak
    method: str  # full gRPC method path
    title: str
    stream: bool = False


_V2 = "/flagd.evaluation.v2.Service/"
_V1 = "/flagd.evaluation.v1.Service/"
_NATIVE = "/flagedge.v1.Evaluation/"

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("evaluate", "flagedge.v1", _NATIVE + "Evaluate", "Evaluate"),
        Scenario("all", "flagedge.v1", _NATIVE + "EvaluateAll", "EvaluateAll"),
        Scenario("batch", "flagedge.v1", _NATIVE + "EvaluateBatch", "EvaluateBatch"),
        Scenario("stream", "flagedge.v1", _NATIVE + "EvaluateStream", "EvaluateStream", True),
        Scenario("resolve", "flagd.v2", _V2 + "ResolveBoolean", "v2 ResolveBoolean"),
        Scenario("resolve_string", "flagd.v2", _V2 + "ResolveString", "v2 ResolveString"),
        Scenario("resolve_int", "flagd.v2", _V2 + "ResolveInt", "v2 ResolveInt"),
        Scenario("resolve_float", "flagd.v2", _V2 + "ResolveFloat", "v2 ResolveFloat"),
        Scenario("resolve_object", "flagd.v2", _V2 + "ResolveObject", "v2 ResolveObject"),
        Scenario("v1_resolve", "flagd.v1", _V1 + "ResolveBoolean", "v1 ResolveBoolean"),
        Scenario("v1_resolve_all", "flagd.v1", _V1 + "ResolveAll", "v1 ResolveAll"),
    )
}
GROUPS: dict[str, tuple[str, ...]] = {
    "every": tuple(SCENARIOS),
    "native": tuple(n for n, s in SCENARIOS.items() if s.api == "flagedge.v1"),
    "flagd": tuple(n for n, s in SCENARIOS.items() if s.api != "flagedge.v1"),
}


def parse_scenarios(text: str) -> tuple[str, ...]:
    """``resolve,all`` or a group name -> scenario names, in the order given."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        found = GROUPS.get(part) or ((part,) if part in SCENARIOS else None)
        if found is None:
            known = ", ".join([*GROUPS, *SCENARIOS])
            raise argparse.ArgumentTypeError(f"unknown scenario {part!r} (known: {known})")
        names.extend(n for n in found if n not in names)
    if not names:
        raise argparse.ArgumentTypeError("no scenario named")
    return tuple(names)


# -- what to ask ---------------------------------------------------------------------------

# Flags of the types the mixed set lacks, for ResolveInt/Float/Object (added by bench_doc).
INT_FLAG = "typed-int"
FLOAT_FLAG = "typed-float"
OBJECT_FLAG = "typed-object"


def bench_doc() -> dict[str, Any]:
    """The flag set a benchmark server serves: the 200 mixed flags of the workloads, plus one
    static flag each of the integer, float and object types."""
    doc = mixed_doc(200)
    for key, values in (
        (INT_FLAG, {"small": 10, "large": 1000}),
        (FLOAT_FLAG, {"low": 0.25, "high": 0.75}),
        (OBJECT_FLAG, {"a": {"colour": "red", "size": 3}, "b": {"colour": "blue"}}),
    ):
        doc["flags"][key] = {
            "state": "ENABLED",
            "variants": values,
            "defaultVariant": next(iter(values)),
        }
    return doc


def _default_flag(kind: str) -> str:
    return next(s.key for s in mixed_specs(200) if s.kind == kind)


@dataclass(frozen=True, slots=True)
class Workload:
    """The flags and context every scenario asks about. Defaults: the benchmark flag set."""

    flag: str = field(default_factory=lambda: _default_flag("targeted"))
    boolean_flag: str = field(default_factory=lambda: _default_flag("rollout"))
    string_flag: str = field(default_factory=lambda: _default_flag("targeted"))
    int_flag: str = INT_FLAG
    float_flag: str = FLOAT_FLAG
    object_flag: str = OBJECT_FLAG
    context: dict[str, Any] = field(default_factory=mixed_context)
    batch_flags: tuple[str, ...] = field(
        default_factory=lambda: tuple(s.key for s in mixed_specs(200)[:10])
    )
    batch_contexts: int = 100

    def request(self, scenario: str) -> bytes:
        """The serialised request of ``scenario``."""
        from flagedge._proto.flagd.evaluation.v1 import evaluation_pb2 as v1
        from flagedge._proto.flagd.evaluation.v2 import evaluation_pb2 as v2
        from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb

        message: Any
        if scenario == "evaluate":
            message = pb.EvaluateRequest(flag_key=self.flag)
        elif scenario == "all":
            message = pb.EvaluateAllRequest()
        elif scenario in ("batch", "stream"):
            message = pb.EvaluateBatchRequest(flag_keys=list(self.batch_flags))
            for context in rollout_contexts(self.batch_contexts):
                message.contexts.add().update({**self.context, **context})
            return bytes(message.SerializeToString())
        elif scenario == "v1_resolve_all":
            message = v1.ResolveAllRequest()
        else:
            module = v1 if scenario == "v1_resolve" else v2
            kind, key = {
                "resolve": ("Boolean", self.boolean_flag),
                "v1_resolve": ("Boolean", self.boolean_flag),
                "resolve_string": ("String", self.string_flag),
                "resolve_int": ("Int", self.int_flag),
                "resolve_float": ("Float", self.float_flag),
                "resolve_object": ("Object", self.object_flag),
            }[scenario]
            message = getattr(module, f"Resolve{kind}Request")(flag_key=key)
        message.context.update(self.context)
        return bytes(message.SerializeToString())

    def flag_of(self, scenario: str) -> str | None:
        """The one flag a single-flag scenario asks about (None for all, batch, stream)."""
        return {
            "evaluate": self.flag,
            "resolve": self.boolean_flag,
            "v1_resolve": self.boolean_flag,
            "resolve_string": self.string_flag,
            "resolve_int": self.int_flag,
            "resolve_float": self.float_flag,
            "resolve_object": self.object_flag,
        }.get(scenario)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "batch_flags": list(self.batch_flags)}
