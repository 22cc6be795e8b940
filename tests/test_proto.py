"""The .proto files and the committed generated code agree, and our flagd protos describe
the same wire format as the ones the OpenFeature provider ships (compared field by field in
child processes: one process cannot load both, they define the same protobuf package)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SHAPE = """
import importlib, json, sys
f = importlib.import_module(sys.argv[1]).DESCRIPTOR
out = {"package": f.package}
for name, m in f.message_types_by_name.items():
    out[name] = sorted(
        [d.name, d.number, d.type, d.is_repeated, d.has_presence,
         d.containing_oneof.name if d.containing_oneof else None,
         d.message_type.full_name if d.message_type else None]
        for d in m.fields
    )
for s in f.services_by_name.values():
    out["service " + s.full_name] = sorted(
        [m.name, m.input_type.full_name, m.output_type.full_name,
         m.client_streaming, m.server_streaming]
        for m in s.methods
    )
print(json.dumps(out, sort_keys=True))
"""


def shape(module: str) -> object:
    out = subprocess.run(
        [sys.executable, "-c", SHAPE, module], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def test_the_committed_generated_code_matches_the_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_our_flagd_protos_match_the_providers_field_for_field(version: str) -> None:
    ours = shape(f"flagedge._proto.flagd.evaluation.{version}.evaluation_pb2")
    theirs = shape(f"openfeature.schemas.protobuf.flagd.evaluation.{version}.evaluation_pb2")
    assert ours == theirs
