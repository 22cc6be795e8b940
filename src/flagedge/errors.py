"""flagedge's exceptions. Evaluation never raises for data problems: it returns a
Resolution carrying an error code. These are for loading, storing and serving.

    FlagedgeError
    ├── DefinitionError        a definitions document was refused; .problems lists each by path
    ├── StoreError             a definitions store could not be read or written
    │   └── StoreUnavailable   the store cannot be reached at all (Redis down, file missing)
    └── RequestError           a request the server will not evaluate (limits, bad context)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definitions document, located by a dotted JSON path.

    ``fatal`` problems reject the whole document; the others (an unknown operator, a
    ``$ref`` to a missing evaluator) disable one flag, which then resolves PARSE_ERROR.
    """

    path: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FlagedgeError(Exception):
    """Base of every error flagedge raises on purpose."""


class DefinitionError(FlagedgeError):
    def __init__(self, problems: Iterable[Problem], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{where}{len(self.problems)} problem(s) in flag definitions\n{lines}")


class StoreError(FlagedgeError):
    pass


class StoreUnavailable(StoreError):
    pass


class RequestError(FlagedgeError):
    pass
