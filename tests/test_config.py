"""Every setting resolves in one place: command line, then FLAGEDGE_* variable, then the
config file, then the default; and the README's table is the declarations'."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from flagedge import config
from flagedge.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


def parse(*argv: str, groups: tuple[config.Group, ...] = (config.SERVE,)) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_options(parser, list(groups))
    return parser.parse_args(list(argv))


def test_the_command_line_beats_the_variable_which_beats_the_file_which_beats_the_default(
    tmp_path: Path,
) -> None:
    file = tmp_path / "flagedge.yaml"
    file.write_text("port: 7000\ngrace: 3\nmanagement_port: 7001\n")
    env = {"FLAGEDGE_PORT": "8000", "FLAGEDGE_GRACE": "4", "FLAGEDGE_CONFIG": str(file)}
    s = config.resolve(parse("--port", "9000"), [config.SERVE], env)
    assert s["port"] == 9000 and s.origin["port"] == "cli"
    assert s["grace"] == 4.0 and s.origin["grace"] == "env"
    assert s["management_port"] == 7001 and s.origin["management_port"] == "file"
    assert s["poll_interval"] == 0.5 and s.origin["poll_interval"] == "default"


def test_a_toml_config_file_is_read_by_its_extension(tmp_path: Path) -> None:
    file = tmp_path / "flagedge.toml"
    file.write_text('host = "127.0.0.1"\nworkers = 3\nlog-format = "text"\n')
    s = config.resolve(
        parse("--config", str(file), groups=(config.SERVE, config.LOGGING)),
        [config.SERVE, config.LOGGING],
        {},
    )
    assert (s["host"], s["workers"], s["log_format"]) == ("127.0.0.1", 3, "text")


def test_an_unknown_setting_in_a_config_file_is_refused_with_its_key(tmp_path: Path) -> None:
    file = tmp_path / "flagedge.yaml"
    file.write_text("port: 1\nprot: 2\n")
    with pytest.raises(ConfigError) as caught:
        config.resolve(parse("--config", str(file)), [config.SERVE], {})
    assert [p.path for p in caught.value.problems] == ["prot"]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLAGEDGE_PORT", "eighty", "FLAGEDGE_PORT"),
        ("FLAGEDGE_PORT", "70000", "not a port"),
        ("FLAGEDGE_GRACE", "-1", "seconds"),
        ("FLAGEDGE_EVENT_LOOP", "trio", "not one of"),
    ],
)
def test_a_variable_that_does_not_parse_names_itself(variable: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        config.resolve(parse(), [config.SERVE], {variable: value})


def test_a_secret_setting_has_no_command_line_flag() -> None:
    parser = argparse.ArgumentParser()
    config.add_options(parser, [config.REDIS])
    with pytest.raises(SystemExit):
        parser.parse_args(["--sentinel-password", "x"])
    s = config.resolve(parser.parse_args([]), [config.REDIS], {"FLAGEDGE_SENTINEL_PASSWORD": "x"})
    assert s["sentinel_password"] == "x"


def test_every_option_has_help_and_a_variable() -> None:
    for option in config.all_options():
        assert option.help and option.env.startswith("FLAGEDGE_"), option.name


def test_the_readme_lists_every_setting_as_declared() -> None:
    text = README.read_text()
    start = text.index("<!-- options table")
    start = text.index("\n", start) + 1
    end = text.index("<!-- end of options table -->")
    assert text[start:end] == config.options_table()


def test_python_m_flagedge_config_prints_the_table_the_readme_carries() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flagedge.config"], capture_output=True, text=True, check=True
    )
    assert done.stdout == config.options_table()
