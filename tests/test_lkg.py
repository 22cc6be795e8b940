"""The last-known-good file (flagedge.store.lkg): the state an edge last applied, written
atomically and readable by its owner only; reading it back refuses, with one clear problem,
a file that is missing, damaged or another environment's."""

from __future__ import annotations

import stat
from pathlib import Path
from types import MappingProxyType

import pytest

from flagedge.errors import DefinitionError
from flagedge.store.lkg import read_lkg, write_lkg
from flagedge.store.plane import RawState

STATE = RawState(7, b'{"flags": {}}', MappingProxyType({"a": b'{"kind": "kill"}'}))


def test_what_is_written_reads_back_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "lkg.json"
    write_lkg(path, "prod", STATE)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = read_lkg(path, "prod")
    assert (back.version, back.definitions, dict(back.overrides)) == (
        7,
        b'{"flags": {}}',
        {"a": b'{"kind": "kill"}'},
    )
    write_lkg(path, "prod", RawState(8, b"{}", MappingProxyType({})))  # replaced whole
    assert read_lkg(path, "prod").version == 8
    assert [p.name for p in tmp_path.iterdir()] == ["lkg.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read"),
        ("{ nope", "is not JSON"),
        ("[1, 2]", "is not a last-known-good file"),
        ('{"env": "staging", "version": 1, "definitions": "{}", "overrides": {}}', "staging"),
        ('{"env": "prod", "definitions": "{}", "overrides": {}}', "lacks a version"),
        ('{"env": "prod", "version": 1, "definitions": {}, "overrides": {}}', "lacks a version"),
        ('{"env": "prod", "version": 1, "definitions": "{}", "overrides": []}', "malformed"),
        ('{"env": "prod", "version": 1, "definitions": "{}", "overrides": {"a": 1}}', "malformed"),
    ],
)
def test_a_missing_damaged_or_foreign_file_is_refused_with_one_problem(
    tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "lkg.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DefinitionError) as err:
        read_lkg(path, "prod")
    (problem,) = err.value.problems
    assert says in problem.message
