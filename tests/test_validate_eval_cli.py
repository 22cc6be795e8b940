"""The real ``flagedge`` CLI, run as a subprocess: validate and eval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "flagedge" / "examples" / "flags.json"


def flagedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagedge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(tmp_path: Path, doc: Any, name: str = "flags.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_validate_accepts_the_bundled_examples() -> None:
    out = flagedge("validate", str(EXAMPLES))
    assert out.returncode == 0, out.stderr
    assert "ok, 7 flags" in out.stdout


def test_validate_lists_every_problem_with_its_path_and_exits_non_zero(tmp_path: Path) -> None:
    doc = {
        "flags": {
            "checkout": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "blue",
            },
            "mixed": {"state": "ON", "variants": {"a": 1, "b": "x"}},
            "rule": {
                "state": "ENABLED",
                "variants": {"on": True},
                "targeting": {"if": [{"no_such_op": [1]}, "on"]},
            },
        }
    }
    out = flagedge("validate", str(write(tmp_path, doc)))
    assert out.returncode == 1
    assert 'flags.checkout.defaultVariant: "blue" is not a variant (on, off)' in out.stdout
    assert 'flags.mixed.state: "ON" is not ENABLED or DISABLED' in out.stdout
    assert "flags.mixed.variants: all variants must have one type" in out.stdout
    assert 'flags.rule.targeting.if[0]: unknown operator "no_such_op"' in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_validate_reports_a_missing_evaluator_but_the_set_still_loads(tmp_path: Path) -> None:
    doc = {
        "flags": {
            "f": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "nope"}, "on", "off"]},
            }
        }
    }
    out = flagedge("validate", "--json", str(write(tmp_path, doc)))
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["valid"] is False
    assert report["problems"] == [
        {
            "path": "flags.f.targeting.if[0]",
            "message": '$ref to a missing evaluator "nope"',
            "fatal": False,
        }
    ]


@pytest.mark.parametrize(
    ("content", "needle"),
    [("{not json", "invalid JSON"), ("[1, 2]", "the document must be an object")],
)
def test_validate_explains_unreadable_documents(tmp_path: Path, content: str, needle: str) -> None:
    out = flagedge("validate", str(write(tmp_path, content)))
    assert out.returncode == 1
    assert needle in out.stdout
    assert "Traceback" not in out.stderr


def test_validate_reads_yaml(tmp_path: Path) -> None:
    p = tmp_path / "flags.yaml"
    p.write_text("flags:\n  f:\n    state: ENABLED\n    variants: {'on': true}\n")
    out = flagedge("validate", str(p))
    assert out.returncode == 0, out.stdout + out.stderr


def test_validate_explains_yaml_booleans_used_as_variant_names(tmp_path: Path) -> None:
    p = tmp_path / "flags.yaml"
    p.write_text("flags:\n  f:\n    state: ENABLED\n    variants: {on: true}\n")
    out = flagedge("validate", str(p))
    assert out.returncode == 1
    assert "flags.f.variants: variant names must be strings, not true" in out.stdout


def test_eval_prints_one_resolution_as_json() -> None:
    out = flagedge(
        "eval",
        "advanced-analytics",
        "--context",
        '{"targetingKey": "u1", "plan": "premium"}',
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert set(res) == {
        "key",
        "value",
        "variant",
        "reason",
        "errorCode",
        "errorMessage",
        "metadata",
    }
    assert res["value"] is True and res["variant"] == "granted"
    assert res["reason"] == "TARGETING_MATCH" and res["errorCode"] is None
    assert res["metadata"]["kind"] == "permission"


def test_eval_exits_zero_when_the_resolution_carries_an_error() -> None:
    out = flagedge("eval", "no-such-flag")
    assert out.returncode == 0
    res = json.loads(out.stdout)
    assert res["errorCode"] == "FLAG_NOT_FOUND" and res["value"] is None


def test_eval_type_mismatch_is_reported_in_the_resolution() -> None:
    out = flagedge("eval", "header-banner", "--type", "boolean")
    res = json.loads(out.stdout)
    assert res["reason"] == "ERROR" and res["errorCode"] == "TYPE_MISMATCH"


def test_eval_integer_truncates_like_flagd(tmp_path: Path) -> None:
    doc = {"flags": {"n": {"state": "ENABLED", "variants": {"pi": 3.14}, "defaultVariant": "pi"}}}
    out = flagedge("eval", "n", "--flags", str(write(tmp_path, doc)), "--type", "integer")
    assert json.loads(out.stdout)["value"] == 3


def test_eval_rejects_a_bad_context_clearly() -> None:
    out = flagedge("eval", "new-checkout", "--context", "[1]")
    assert out.returncode == 2
    assert "--context must be a JSON object" in out.stderr


def test_eval_refuses_an_invalid_definitions_file(tmp_path: Path) -> None:
    out = flagedge("eval", "x", "--flags", str(write(tmp_path, {"flags": 3})))
    assert out.returncode == 2
    assert "flags: must be an object, not a number" in out.stderr
