"""Flag documents the tests share, and the one fixed clock of the in-process tests.

DOCUMENT         a flag for every row of flagd's result table (docs/flagd-compat.md 1.6)
build()          DOCUMENT (or another document) as a Snapshot
document(a="on") boolean flags named by keyword, each defaulting to the variant given
switch("on")     one boolean flag, "switch" (switch_and_other: and a string flag)
TOGGLES          a toggle of each kind (release, ops, permission), for usage and stale
"""

from __future__ import annotations

from typing import Any

from flagedge.snapshot import Snapshot

NOW = 1_700_000_000

DOCUMENT: dict[str, Any] = {
    "metadata": {"flagSetId": "shop", "version": "7"},
    "flags": {
        "static-bool": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"owner": "checkout"},
        },
        "targeted-string": {
            "state": "ENABLED",
            "variants": {"red": "#f00", "blue": "#00f"},
            "defaultVariant": "red",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "blue", None]},
        },
        "shorthand-bool": {
            "state": "ENABLED",
            "variants": {"true": True, "false": False},
            "defaultVariant": "false",
            "targeting": {"==": [{"var": "tier"}, "gold"]},
        },
        "int-flag": {
            "state": "ENABLED",
            "variants": {"one": 1, "pi": 3.14},
            "defaultVariant": "one",
            "targeting": {"if": [{"==": [{"var": "want"}, "pi"]}, "pi", None]},
        },
        "float-flag": {
            "state": "ENABLED",
            "variants": {"half": 0.5, "two": 2},
            "defaultVariant": "half",
        },
        "object-flag": {
            "state": "ENABLED",
            "variants": {"a": {"size": 3, "name": "A"}, "b": {"size": 4}},
            "defaultVariant": "a",
        },
        "no-default": {"state": "ENABLED", "variants": {"x": "X", "y": "Y"}},
        "null-default": {
            "state": "ENABLED",
            "variants": {"x": "X", "y": "Y"},
            "defaultVariant": None,
            "targeting": {"if": [{"==": [{"var": "pick"}, "y"]}, "y", None]},
        },
        "disabled-flag": {
            "state": "DISABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"owner": "ops"},
        },
        "bad-rule": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"no_such_operator": [1, 2]},
        },
        "unknown-variant": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [True, "missing", "off"]},
        },
        "other-set": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"flagSetId": "other"},
        },
    },
}


def build(document: dict[str, Any] | None = None, version: int = 1) -> Snapshot:
    return Snapshot.build(document or DOCUMENT, version=version)


def document(**defaults: str) -> dict[str, Any]:
    """Boolean flags named by keyword, each defaulting to the variant given."""
    return {
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": default,
            }
            for key, default in defaults.items()
        }
    }


def switch(default: str) -> dict[str, Any]:
    """One boolean flag, "switch", defaulting to the variant given ("on" or "off")."""
    return {
        "flags": {
            "switch": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": default,
            }
        }
    }


def switch_and_other(default: str) -> dict[str, Any]:
    """ "switch" as in :func:`switch`, and a string flag "other" (variants a and b)."""
    doc = switch(default)
    doc["flags"]["other"] = {
        "state": "ENABLED",
        "variants": {"a": "A", "b": "B"},
        "defaultVariant": "a",
    }
    return doc


# A toggle of each kind (metadata.kind): "mixed" serves "on" to beta users, the others one
# variant each.
TOGGLES: dict[str, Any] = {
    "flags": {
        "mixed": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "beta"}, True]}, "on", "off"]},
            "metadata": {"kind": "release"},
        },
        "stuck": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "release"},
        },
        "kill-switch": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "metadata": {"kind": "ops"},
        },
        "forgotten": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "metadata": {"kind": "permission"},
        },
    }
}
