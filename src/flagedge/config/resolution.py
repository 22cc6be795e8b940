"""Resolution: each option of a command's groups from the command line, else the environment,
else the config file, else the default; and the settings that combine several options.

    add_options(parser, groups)         --port (unset unless given: default None)
    resolve(args, groups, environ) ─► Settings: values, and where each came from
    redis_url(settings), definition_limits(settings)
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..definitions import DefinitionLimits
from ..errors import ConfigError, Problem
from .groups import CONFIG, all_options
from .options import Group

# -- the command line -------------------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser, groups: Sequence[Group]) -> None:
    """Add ``--config`` and each group's options to ``parser``. Nothing gets an argparse
    default: an option not given stays None, so that ``resolve`` can tell."""
    parser.add_argument(
        "--config",
        dest="config",
        default=None,
        metavar="FILE",
        help=f"{CONFIG.help} [{CONFIG.env}]",
    )
    for group in groups:
        section = parser.add_argument_group(group.title)
        for option in group.options:
            if not option.cli:
                continue
            kind: dict[str, Any]
            if option.many:
                kind = {"action": "append", "type": option.parse, "metavar": option.metavar}
            elif option.switch:
                kind = {"action": "store_true"}
            else:
                kind = {"type": option.parse, "choices": option.choices, "metavar": option.metavar}
            section.add_argument(
                f"--{option.name}",
                dest=option.dest,
                default=None,
                help=f"{option.help} [{option.env}; default {option.describe_default()}]",
                **kind,
            )


# -- resolution ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved values by option ``dest``, and where each came from (cli, env, file,
    default): ``settings["port"]``, ``settings.origin["port"]``."""

    values: Mapping[str, Any]
    origin: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def _file_key(key: str) -> str:
    return key.strip().replace("_", "-")


def load_config_file(path: Path) -> dict[str, Any]:
    """A config file's settings, keyed by option name; ConfigError lists every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".toml":
            loaded: Any = tomllib.loads(data.decode("utf-8"))
        else:  # YAML, and JSON, which YAML reads
            import yaml

            loaded = yaml.safe_load(data)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml for TOML users
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: settings are a mapping of option names")
    known = {o.name for o in all_options()}
    values: dict[str, Any] = {}
    problems = []
    for key, value in loaded.items():
        name = _file_key(str(key))
        if name not in known or name == "config":
            problems.append(Problem(str(key), "not a flagedge setting"))
        else:
            values[name] = value
    if problems:
        raise ConfigError(f"config file {path} has unknown settings", problems=problems)
    return values


def resolve(
    args: argparse.Namespace,
    groups: Sequence[Group],
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Each option of ``groups``: the command line, else the environment, else the config
    file, else the default. ConfigError for a value that does not parse."""
    env = os.environ if environ is None else environ
    config_path = getattr(args, "config", None) or env.get(CONFIG.env) or None
    from_file = load_config_file(Path(config_path)) if config_path else {}
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for group in groups:
        for option in group.options:
            given = getattr(args, option.dest, None) if option.cli else None
            if given is not None:
                values[option.dest] = tuple(given) if option.many else given
                origin[option.dest] = "cli"
            elif env.get(option.env, "") != "":
                values[option.dest] = option.convert(env[option.env], option.env)
                origin[option.dest] = "env"
            elif option.name in from_file:
                where = f"{config_path}: {option.name}"
                values[option.dest] = option.convert(from_file[option.name], where)
                origin[option.dest] = "file"
            else:
                values[option.dest], origin[option.dest] = option.default, "default"
    return Settings(MappingProxyType(values), MappingProxyType(origin))


# -- settings that combine options ----------------------------------------------------------

_RANK = {"cli": 0, "env": 1, "file": 2, "default": 3}


def redis_url(s: Settings) -> str | None:
    """The Redis URL: --redis (FLAGEDGE_REDIS_URL), or the first line of --redis-url-file
    (FLAGEDGE_REDIS_URL_FILE), whichever was given at the higher level; both at one level
    is refused. ConfigError when the file cannot be read or is empty."""
    url, path = s.get("redis"), s.get("redis_url_file")
    if not path:
        return url or None
    if url:
        mine, theirs = _RANK[s.origin.get("redis", "default")], _RANK[s.origin["redis_url_file"]]
        if mine < theirs:
            return str(url)
        if mine == theirs:
            raise ConfigError("give the Redis URL once: --redis or --redis-url-file, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Redis URL file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the Redis URL file {path} is not UTF-8 text") from None
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"the Redis URL file {path} is empty")
    return lines[0].strip()


def definition_limits(s: Settings) -> DefinitionLimits:
    """The DEFINITION_LIMITS group's values (defaults for the ones a command lacks)."""
    default = DefinitionLimits()
    return DefinitionLimits(
        max_bytes=s.get("max_definitions_bytes", default.max_bytes),
        max_rule_depth=s.get("max_rule_depth", default.max_rule_depth),
        max_rule_width=s.get("max_rule_width", default.max_rule_width),
        max_rule_nodes=s.get("max_rule_nodes", default.max_rule_nodes),
        max_rule_cost=s.get("max_rule_cost", default.max_rule_cost),
    )
