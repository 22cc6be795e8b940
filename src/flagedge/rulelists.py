"""The lists inside a targeting rule that people edit without touching JSON: who is in a
permission toggle. Pure: reads a flag's definition, returns a changed copy.

    {"in": [{"var": "plan"}, ["pro", "enterprise"]]}          plan is one of ...
    {"or": [{"ends_with": [{"var": "email"}, "@a.dev"]},       email ends with one of ...
            {"ends_with": [{"var": "email"}, "@b.dev"]}]}

    list_operands(definition) ─► [ListOperand(path, subject, kind, values)]
    edit_lists(definition, [ListEdit(path, add, remove)]) ─► new definition | DefinitionError

Paths name the operand inside the flag's JSON (``targeting.if[0].in[1]``), so a form can
say which list it changes, and a problem says where. ``$ref``s stay as written: a list in
``$evaluators`` is shared by several flags and is edited as a definition, not here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError, Problem

Scalar = str | int | float

MAX_VALUES = 10_000  # per list: a rule is compiled and shipped to every edge


@dataclass(frozen=True, slots=True)
class ListOperand:
    path: str
    subject: str  # what is compared: "plan", "email"
    kind: str  # "one-of" (an ``in`` list) or "ends-with" / "starts-with" (an ``or`` of them)
    values: tuple[Scalar, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "subject": self.subject,
            "kind": self.kind,
            "values": list(self.values),
        }


@dataclass(frozen=True, slots=True)
class ListEdit:
    path: str
    add: tuple[Scalar, ...] = ()
    remove: tuple[Scalar, ...] = ()


def _scalar(v: Any) -> bool:
    return isinstance(v, str | int | float) and not isinstance(v, bool)


def _subject(node: Any) -> str | None:
    if isinstance(node, dict) and list(node) == ["var"]:
        path = node["var"]
        path = path[0] if isinstance(path, list) and path else path
        return path if isinstance(path, str) and path else None
    return None


def _affix_group(args: list[Any]) -> tuple[str, str, list[str]] | None:
    """(subject, op, strings) when ``args`` are all ends_with (or all starts_with) of one
    variable against literal strings."""
    if not args:
        return None
    ops, subjects, values = set(), set(), []
    for a in args:
        if not (isinstance(a, dict) and len(a) == 1):
            return None
        ((op, operands),) = a.items()
        if op not in ("ends_with", "starts_with") or not isinstance(operands, list):
            return None
        if len(operands) != 2 or not isinstance(operands[1], str):
            return None
        subject = _subject(operands[0])
        if subject is None:
            return None
        ops.add(op)
        subjects.add(subject)
        values.append(operands[1])
    if len(ops) != 1 or len(subjects) != 1:
        return None
    return subjects.pop(), ops.pop(), values


def _walk(node: Any, path: str, depth: int = 0) -> Iterator[ListOperand]:
    if depth > 64:
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]", depth + 1)
        return
    if not isinstance(node, dict) or len(node) != 1:
        return
    ((op, args),) = node.items()
    here = f"{path}.{op}"
    if op == "in" and isinstance(args, list) and len(args) == 2:
        haystack = args[1]
        subject = _subject(args[0])
        if subject is not None and isinstance(haystack, list) and all(map(_scalar, haystack)):
            yield ListOperand(f"{here}[1]", subject, "one-of", tuple(haystack))
    if op == "or" and isinstance(args, list):
        group = _affix_group(args)
        if group is not None:
            subject, affix, values = group
            kind = "ends-with" if affix == "ends_with" else "starts-with"
            yield ListOperand(here, subject, kind, tuple(values))
            return
    yield from _walk(args, here, depth + 1)


def list_operands(definition: Mapping[str, Any]) -> list[ListOperand]:
    """Every editable list in a flag's targeting, in document order."""
    return list(_walk(definition.get("targeting"), "targeting"))


_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _locate(root: Any, path: str) -> tuple[Any, Any] | None:
    """(container, key) of the node at ``path`` ('targeting.if[0].in[1]'), or None."""
    if not path.startswith("targeting"):
        return None
    rest = path[len("targeting") :]
    steps = [(m[1], m[2]) for m in _STEP.finditer(rest)]
    if "".join(f".{n}" if n else f"[{i}]" for n, i in steps) != rest:
        return None
    container: Any = root
    key: Any = "targeting"
    for name, index in steps:
        node = container[key] if _has(container, key) else None
        if name:
            if not isinstance(node, dict) or name not in node:
                return None
            container, key = node, name
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return None
            container, key = node, int(index)
    return (container, key) if _has(container, key) else None


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and key < len(container)


def _coerce(value: Any, existing: Sequence[Scalar]) -> Scalar:
    """A value from a form: a number when the list holds numbers only."""
    if isinstance(value, str) and existing and all(not isinstance(v, str) for v in existing):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if not _scalar(value):
        raise ValueError(f"{value!r} is not a string or a number")
    return value  # type: ignore[no-any-return]


def edit_lists(definition: Mapping[str, Any], edits: Sequence[ListEdit]) -> dict[str, Any]:
    """A copy of ``definition`` with values added to and removed from its lists.

    DefinitionError lists every problem: a path that names no editable list, a value that
    is not a string or number, removing a value that is not there. Adding a value already
    present changes nothing (two people adding the same customer agree)."""
    out: dict[str, Any] = copy.deepcopy(dict(definition))
    operands = {o.path: o for o in list_operands(out)}
    problems: list[Problem] = []
    for n, edit in enumerate(edits):
        operand = operands.get(edit.path)
        if operand is None:
            known = ", ".join(operands) or "none"
            problems.append(Problem(edit.path, f"is not an editable list (lists: {known})"))
            continue
        values = list(operand.values)
        for value in edit.remove:
            if value not in values:
                problems.append(Problem(f"edits[{n}].remove", f"{value!r} is not in the list"))
            else:
                values.remove(value)
        for raw in edit.add:
            try:
                value = _coerce(raw.strip() if isinstance(raw, str) else raw, operand.values)
            except ValueError as exc:
                problems.append(Problem(f"edits[{n}].add", str(exc)))
                continue
            if value == "":
                problems.append(Problem(f"edits[{n}].add", "an empty value matches nobody"))
            elif value not in values:
                values.append(value)
        if len(values) > MAX_VALUES:
            problems.append(Problem(edit.path, f"more than {MAX_VALUES} values"))
            continue
        located = _locate(out, edit.path)
        assert located is not None  # list_operands found it at this path
        container, key = located
        if operand.kind == "one-of":
            container[key] = values
        else:
            op = "ends_with" if operand.kind == "ends-with" else "starts_with"
            if not values:
                # An empty or is null (no one matches): keep the shape the form recognises
                # out of the rule rather than leave a condition nobody can read.
                problems.append(Problem(edit.path, "the last value cannot be removed here"))
                continue
            container[key] = [{op: [{"var": operand.subject}, v]} for v in values]
        operands = {o.path: o for o in list_operands(out)}
    if problems:
        raise DefinitionError(problems)
    return out
