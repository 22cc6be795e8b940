"""flagedge's exceptions and exit codes. Evaluation never raises for data problems: it
returns a Resolution carrying an error code. These are for loading, storing, serving and
the command line.

    FlagedgeError
    ├── DefinitionError        a definitions document was refused; .problems lists each by path
    ├── StoreError             a definitions store could not be read or written
    │   ├── StoreUnavailable   the store cannot be reached at all (Redis down, file missing)
    │   └── StoreRefused       the store refused a command: its user lacks the permission
    ├── RequestError           a call the server will not evaluate (bad context, selector):
    │   │                      INVALID_ARGUMENT
    │   └── LimitExceeded      over one of the request limits (wire.Limits); .limit names
    │                          the setting; logged, at most once per limit every 10 s
    ├── CallError              a call answered with a status instead of a result
    │   ├── FlagdError         flagd's error statuses, by OpenFeature error code
    │   ├── DeadlineExpired    the caller's deadline passed before the work started
    │   ├── NotReady           no snapshot installed yet: UNAVAILABLE, which clients retry
    │   ├── Unauthenticated    no token, a malformed one, or an unknown one (no detail given)
    │   ├── PermissionDenied   a known caller without the scope or role the call needs
    │   ├── TooManyStreams     a caller already holds its limit of open streaming calls
    │   └── Overloaded         the server is at a capacity limit (open streams):
    │                          RESOURCE_EXHAUSTED; logged like LimitExceeded
    └── Refusal                a command that will not go on: a message, its problems and
        ├── ConfigError        the exit code; a bad option, variable or config file (exit 2)
        └── Conflict           an edit made against a version whose flag has changed since
                               (the concurrent-edit check; exit 1, HTTP 409)

server/status.py is the one place where these become gRPC status codes; cli/ is the one
place where a Refusal becomes a message on stderr and an exit code (ExitCode below, the
same for every command).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from .model import ErrorCode


class ExitCode(IntEnum):
    """What every ``flagedge`` command exits with."""

    OK = 0
    FAILED = 1  # not converged in time, or a check that found something (validate, stale)
    INVALID = 2  # invalid input or usage: every problem is listed
    UNREACHABLE = 3  # Redis (or the admin service) cannot be reached


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


class StoreRefused(StoreError):
    """The store answered but refused the command (a Redis ACL user without the right)."""


class RequestError(FlagedgeError):
    pass


class LimitExceeded(RequestError):
    """A request over one of the server's limits; ``limit`` is the setting's name."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class CallError(FlagedgeError):
    """A call the server answers with a status code (server/status.py maps each)."""


class FlagdError(CallError):
    """A flagd resolve that flagd answers with an error status instead of a body."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code)
        self.code = code


class DeadlineExpired(CallError):
    """The caller's deadline passed before the work started."""


class NotReady(CallError):
    """No snapshot has been installed yet."""


class Unauthenticated(CallError):
    """The call carries no token, a malformed one or an unknown one. The caller is told
    nothing more; ``reason`` (missing, malformed, unknown) is for metrics and logs only."""

    def __init__(self, reason: str = "unknown") -> None:
        super().__init__(reason)
        self.reason = reason


class PermissionDenied(CallError):
    """The caller is known but lacks the scope or role the call needs."""


class TooManyStreams(CallError):
    """The caller already holds as many open streaming calls as it may (per token name)."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"{name} already holds {limit} open streaming call(s), its limit")
        self.name = name
        self.limit = limit


class Overloaded(CallError):
    """A call the server has no room for now (``limit`` names the setting)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class Refusal(FlagedgeError):
    """A command that cannot go on: the message, the problems behind it, the exit code."""

    def __init__(
        self,
        message: str,
        code: ExitCode = ExitCode.INVALID,
        problems: Iterable[Problem] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.problems = tuple(problems)


class ConfigError(Refusal):
    """An option, environment variable or config file that makes no sense (exit 2)."""


class Conflict(Refusal):
    """An edit based on a version of a flag that someone else has changed since: refused,
    nothing written, so that neither edit is silently lost."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message, ExitCode.FAILED, problems)
