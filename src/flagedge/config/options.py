"""What a setting is: an Option (its flag, variable, config-file key, parser, default and help)
in a Group, and the value parsers the declarations use.

Each parser takes the text of a flag, a variable or a config-file value and returns the value
or raises ValueError; its ``__name__`` is part of argparse's message (invalid _port value).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ConfigError

_N = TypeVar("_N", int, float)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not true or false")


def _number(
    name: str, kind: Callable[[str], _N], low: float, high: float, what: str
) -> Callable[[str], _N]:
    """A parser of ``kind`` numbers from ``low`` to ``high``, refusing others as not ``what``.
    ``name`` is the parser's ``__name__``, which argparse quotes: invalid NAME value."""

    def parse(text: str) -> _N:
        value = kind(text)
        if not low <= value <= high:  # NaN compares false, so it is refused too
            raise ValueError(f"{text!r} is not {what}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


_INF = float("inf")
_seconds = _number("_seconds", float, 0, _INF, "a number of seconds (0 or more)")
_port = _number("_port", int, 0, 65535, "a port (0-65535)")
_count = _number("_count", int, 1, _INF, "a count (1 or more)")
_count0 = _number("_count0", int, 0, _INF, "a count (0 or more)")
_bytes = _number("_bytes", int, 1, _INF, "a size in bytes (1 or more)")
_limit = _number("_limit", int, 0, _INF, "a limit (0 for none, or more)")
# sys.float_info.max, not infinity: an infinite rate is refused.
_rate = _number("_rate", float, 0, sys.float_info.max, "a rate (0 or more per second)")


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high``."""
    # "parse": the name argparse has always quoted for these options (invalid parse value).
    return _number("parse", int, low, high, f"a number from {low} to {high}")


# What a port option that can be switched off holds when it is off ("off" on the command line,
# in the environment and in a config file).
OFF = -1


def _listener_port(text: str) -> int:
    """A port for a listener that can be turned off: 0 or off turns it off (as flagd's
    option); any binds a free port (what tests and supervised workers on port 0 need)."""
    word = text.strip().lower()
    if word == "off":
        return OFF
    if word == "any":
        return 0
    value = _port(text)
    return OFF if value == 0 else value


def _text(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. ``name`` gives the flag (--name), the variable (FLAGEDGE_NAME, unless
    ``variable`` says otherwise) and the config-file key (name, or with underscores)."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # --name alone sets it; the variable and file take true/false
    cli: bool = True  # False: environment and config file only (secrets stay out of `ps`)
    variable: str = ""
    default_text: str = ""  # how the README and --help describe the default
    many: bool = False  # repeatable (--env a --env b); the variable and file: comma-separated

    @classmethod
    def text(
        cls,
        name: str,
        help: str,
        *,
        metavar: str | None = None,
        cli: bool = True,
        variable: str = "",
        default_text: str = "",
    ) -> Option:
        """A setting whose value is its text (a file, an address, a name), unset by default:
        the commonest kind."""
        return cls(
            name,
            _text,
            None,
            help,
            metavar=metavar,
            cli=cli,
            variable=variable,
            default_text=default_text,
        )

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return self.variable or "FLAGEDGE_" + self.dest.upper()

    def describe_default(self) -> str:
        if self.default_text:
            return self.default_text
        if self.default is None:
            return "none"
        if self.switch:
            return "off" if not self.default else "on"
        return str(self.default)

    def convert(self, raw: Any, where: str) -> Any:
        """A value from the environment or a config file, checked and converted."""
        if self.many:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list):
                items = [raw]
            single = Option(self.name, self.parse, None, self.help, choices=self.choices)
            return tuple(
                single.convert(item.strip() if isinstance(item, str) else item, where)
                for item in items
                if not (isinstance(item, str) and not item.strip())
            )
        try:
            if isinstance(raw, str):
                value = _flag(raw) if self.switch else self.parse(raw)
            elif self.switch and isinstance(raw, bool):
                value = raw
            elif isinstance(raw, bool):
                raise ValueError(
                    f"{raw!r} is not a value for this option (YAML reads unquoted on/off/yes/no "
                    "as booleans: quote them)"
                )
            elif isinstance(raw, list | dict) or raw is None:
                raise ValueError(f"{raw!r} is not a value for this option")
            else:  # a YAML/TOML number: check it as its text would be
                value = self.parse(str(raw))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(self.choices)}")
        return value


@dataclass(frozen=True, slots=True)
class Group:
    title: str
    used_by: str  # the commands that take this group, for the README's table
    options: tuple[Option, ...]
