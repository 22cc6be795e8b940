"""The front door, tried as a new user would: the README's examples run as written, and every
option of every command says what it is for.

The README is read top to bottom as one shell session in a scratch directory laid out like a
fresh clone (``src/`` and ``.venv/`` linked to this checkout's), with real servers:

- ``sh`` blocks run command by command (``\\`` continuations joined) under ``bash -e``, each
  expected to exit 0 unless ``EXIT_CODES`` says otherwise; ``export`` carries variables to
  the commands after it; ``flagedge serve`` runs in the background until the next one
  replaces it (a reader stops one before starting the next), and the session waits for its
  ``/readyz``.
- Ports: the documented 8013, 8014, 8015 and 8016 become free ports, in the text and as
  ``FLAGEDGE_PORT``/``FLAGEDGE_MANAGEMENT_PORT``/``FLAGEDGE_SYNC_PORT``/``FLAGEDGE_OFREP_PORT``
  for a bare ``flagedge serve``; the admin service's 8017 too. ``flagedge admin`` runs in the
  background until the session ends, and the session waits until it listens. The Redis
  URL's ``redis.internal:6379`` becomes a redis-server this test starts, with the README's
  ACL user.
- ``python`` blocks run as scripts; a ``print(...)  # TEXT`` line must print TEXT.
- ``grpcurl`` runs when it is on PATH; otherwise the same call is made through the server's
  gRPC reflection in Python. Either way the answer must equal the ``json`` block after it,
  and the command must be the one ``flagedge serve`` logs as its ``try it`` line.
- A ``yaml`` block whose first line reads ``# FILE: COMMAND`` is written to FILE and COMMAND
  is run; other ``json`` blocks must parse; blocks without a language (the layout) are text.
- ``NOT_RUN`` lists the few commands this test does not run, each with its reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from flagedge.cli import build_parser
from flagedge.client import Client
from flagedge.model import Reason
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands the session does not run (matched by their start), and why.
NOT_RUN = {
    "python3 -m venv .venv": "installs flagedge: this test runs in the .venv scripts/check made",
    ".venv/bin/pip install": "installs flagedge: this test runs in the .venv scripts/check made",
    "scripts/check": "the whole suite, this test included",
    "scripts/bench": "a minute or more of measuring; tests/test_bench.py runs the suite (--tiny)",
    "flagedge bench load --target edge.internal": "names the reader's own deployment; "
    "tests/test_bench.py loads a real server with it",
}

#: Exit codes other than 0 that a command may end with, and why.
EXIT_CODES = {
    # The example's release and experiment toggles expire in 2027: from then on the
    # documented CI check finds them, as it should.
    "flagedge stale --flags flags.json --fail": {0, 1},
}


@dataclass(frozen=True, slots=True)
class Block:
    section: str
    lang: str
    text: str


def readme_blocks() -> list[Block]:
    blocks, section = [], ""
    fence = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
    heading = re.compile(r"^#{2,3} (.+)$", re.M)
    text = README.read_text()
    pos = 0
    for found in fence.finditer(text):
        for h in heading.finditer(text, pos, found.start()):
            section = h.group(1)
        pos = found.end()
        blocks.append(Block(section, found.group(1), found.group(2)))
    return blocks


def commands(script: str) -> list[str]:
    """The commands of a shell block: continuations joined, comment-only lines dropped."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def not_run(command: str) -> str | None:
    plain = " ".join(words(command))
    return next((why for start, why in NOT_RUN.items() if plain.startswith(start)), None)


def is_serve(argv: list[str]) -> bool:
    return len(argv) >= 2 and Path(argv[0]).name == "flagedge" and argv[1] == "serve"


def reflection_call(target: str, method: str, request_json: str) -> dict[str, Any]:
    """What ``grpcurl -plaintext -d REQUEST TARGET METHOD`` does: learn the method's types
    from the server's reflection service, send the request, answer in proto3 JSON."""
    service, name = method.rsplit("/", 1)
    with grpc.insecure_channel(target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        desc = pool.FindServiceByName(service).FindMethodByName(name)
        request_type = message_factory.GetMessageClass(desc.input_type)
        response_type = message_factory.GetMessageClass(desc.output_type)
        call = channel.unary_unary(
            f"/{service}/{name}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        response = call(json_format.Parse(request_json, request_type()), timeout=10)
    answer: dict[str, Any] = json.loads(json_format.MessageToJson(response))
    return answer


@dataclass
class Session:
    """One reader's terminal: a scratch clone, an environment, at most one server."""

    home: Path
    redis: RedisServer
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    sync_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    ofrep_port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    admin: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    server_log: Path | None = None
    servers: int = 0
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    last_call: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        (self.home / "src").symlink_to(ROOT / "src")
        venv = Path(sys.executable).parent.parent
        assert (venv / "bin" / "flagedge").exists(), f"no flagedge script in {venv}/bin"
        (self.home / ".venv").symlink_to(venv)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLAGEDGE_") and k != "PYTHONPATH"
        }
        self.env.update(
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            XDG_STATE_HOME=str(self.home / "state"),
            FLAGEDGE_PORT=str(self.port),
            FLAGEDGE_MANAGEMENT_PORT=str(self.management_port),
            FLAGEDGE_SYNC_PORT=str(self.sync_port),
            FLAGEDGE_OFREP_PORT=str(self.ofrep_port),
        )

    def substitute(self, text: str) -> str:
        text = re.sub(r"\b8013\b", str(self.port), text)
        text = re.sub(r"\b8014\b", str(self.management_port), text)
        text = re.sub(r"\b8015\b", str(self.sync_port), text)
        text = re.sub(r"\b8017\b", str(self.admin_port), text)
        text = re.sub(r"\b8016\b", str(self.ofrep_port), text)
        return text.replace("redis.internal:6379", f"127.0.0.1:{self.redis.port}")

    # -- blocks ------------------------------------------------------------------------------

    def run_block(self, block: Block) -> None:
        text = self.substitute(block.text)
        if block.lang == "sh":
            for command in commands(text):
                # A chain (install && serve) runs part by part, as the shell would.
                for part in command.split(" && "):
                    self.run_command(part.strip(), block.section)
        elif block.lang == "python":
            self.run_python(text, block.section)
        elif block.lang == "json":
            document = json.loads(text)
            if self.last_call is not None:  # the answer shown for the call before it
                assert self.last_call == document, (block.section, self.last_call)
                self.last_call = None
        elif block.lang == "yaml":
            named = re.match(r"#\s*(\S+):\s*(.+)", text.splitlines()[0])
            assert named, f"{block.section}: a yaml block names its file and command"
            (self.home / named.group(1)).write_text(text)
            self.run_command(named.group(2), block.section)
        else:
            assert block.lang == "", f"{block.section}: no runner for ```{block.lang}"

    def run_command(self, command: str, section: str) -> None:
        why = not_run(command)
        if why is not None:
            self.skipped.append(command)
            return
        argv = words(command)
        self.ran.append(command)
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
        elif is_serve(argv):
            self.serve(command)
        elif argv[:2] == ["flagedge", "admin"]:
            self.start_admin(command)
        elif argv[0] == "grpcurl":
            self.grpcurl(argv)
        else:
            out = self.shell(command, section)
            if "If-None-Match" in command:  # the README's conditional OFREP call: a 304
                assert out.split() == ["304"], (section, out)
            if argv[:2] == ["flagedge", "kill"] and "--variant" not in argv:
                self.check_killed(argv[2])

    def shell(self, command: str, section: str) -> str:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        allowed = EXIT_CODES.get(" ".join(words(command)), {0})
        assert done.returncode in allowed, (
            f"{section}: `{command}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    def run_python(self, code: str, section: str) -> None:
        script = self.home / f"example_{len(self.ran)}.py"
        script.write_text(code)
        self.ran.append(f"python: {code.splitlines()[0]}")
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{section}: python example failed\n{code}\n{done.stderr}"
        expected = re.findall(r"^\s*print\(.*\)\s+#\s*(.+)$", code, re.M)
        assert expected, f"{section}: a python example says what it prints"
        assert done.stdout.splitlines() == expected, (section, done.stdout)

    # -- servers -----------------------------------------------------------------------------

    def serve(self, command: str) -> None:
        self.stop_server()
        self.servers += 1
        self.server_log = self.home / f"serve-{self.servers}.log"
        with self.server_log.open("wb") as log:
            self.server = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(f"`{command}` to be ready", self.ready, 60)

    def ready(self) -> bool:
        assert self.server is not None and self.server_log is not None
        if self.server.poll() is not None:
            raise AssertionError(f"the server exited:\n{self.server_log.read_text()}")
        url = f"http://127.0.0.1:{self.management_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start_admin(self, command: str) -> None:
        assert self.admin is None, "the README starts one admin service"
        log_path = self.home / "admin.log"
        with log_path.open("wb") as log:
            self.admin = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.home,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def listening() -> bool:
            assert self.admin is not None
            if self.admin.poll() is not None:
                raise AssertionError(f"flagedge admin exited:\n{log_path.read_text()}")
            return "admin service on" in log_path.read_text()

        wait_until(f"`{command}` to listen", listening, 60)

    def stop_admin(self) -> None:
        if self.admin is not None and self.admin.poll() is None:
            self.admin.send_signal(signal.SIGTERM)
            try:
                self.admin.wait(30)
            except subprocess.TimeoutExpired:
                self.admin.kill()
                self.admin.wait(10)
        self.admin = None

    def stop_server(self) -> None:
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)
        self.server = None

    # -- checks of what the README says -----------------------------------------------------

    def try_it(self) -> list[str]:
        """The ``try it`` lines the server logged so far (worker 0 logs one)."""
        assert self.server_log is not None, "grpcurl needs a running server"
        return [
            json.loads(line)["msg"]
            for line in self.server_log.read_text().splitlines()
            if line.startswith("{") and json.loads(line).get("event") == "try"
        ]

    def grpcurl(self, argv: list[str]) -> None:
        # Another worker may have answered /readyz before worker 0 logged its line.
        logged = wait_until("flagedge serve to log its try-it line", self.try_it, 30)
        try_it = logged[0].removeprefix("try it: ").split(" (README")[0]
        assert shlex.split(try_it) == argv, "the README's grpcurl call is serve's try-it line"
        request = argv[argv.index("-d") + 1]
        target, method = argv[-2], argv[-1]
        if shutil.which("grpcurl"):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
            self.last_call = json.loads(out.stdout)
        else:  # the same call, through the same reflection service grpcurl would use
            self.last_call = reflection_call(target, method, request)

    def check_killed(self, key: str) -> None:
        """The README: a kill without --variant makes the flag DISABLED for every caller."""
        with Client(f"127.0.0.1:{self.port}") as client:
            res = client.evaluate(key, {"targetingKey": "user-1"})
        assert res.reason is Reason.DISABLED and res.variant is None and res.value is None


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    acl = "user default off\nuser ops on >secret ~* &* +@all\n"
    redis = RedisServer(tmp_path / "redis", config=acl, username="ops", password="secret").start()
    home = tmp_path / "clone"
    home.mkdir()
    reader = Session(home, redis)
    try:
        yield reader
    finally:
        reader.stop_server()
        reader.stop_admin()
        with contextlib.suppress(Exception):
            redis.kill()


def test_the_readme_runs_as_written_from_a_fresh_clone(session: Session) -> None:
    blocks = readme_blocks()
    for block in blocks:
        session.run_block(block)
    # What a reader is told to do, it did: the quick start, the first call, the flags file,
    # the Redis control plane, a secured edge (TLS, a token) and its client, a config file.
    ran = " | ".join(session.ran)
    for command in (
        ".venv/bin/flagedge serve",
        "grpcurl -plaintext",
        "python: from flagedge.client import Client",
        "python: from openfeature import api",
        "cp src/flagedge/examples/flags.json flags.json",
        "flagedge push flags.json",
        "flagedge kill new-checkout --wait",
        "flagedge serve --config flagedge.yaml",
        "flagedge token new --name checkout-service",
        "flagedge serve --server-cert-path tls.crt",
        "python: import grpc",
        "flagedge admin --env prod --auth-file auth.json",
        "flagedge restore new-checkout --wait",
        "flagedge explain new-checkout",
        "curl -sf -X POST localhost:",
    ):
        assert command in ran
    assert session.servers == 5
    # NOT_RUN: the two install steps, check, two bench lines, the load against edge.internal
    assert len(session.skipped) == 6, session.skipped


def test_every_command_the_readme_test_does_not_run_is_still_in_the_readme() -> None:
    shown = [
        " ".join(words(part))
        for b in readme_blocks()
        if b.lang == "sh"
        for c in commands(b.text)
        for part in c.split(" && ")
    ]
    for start in NOT_RUN:
        assert any(c.startswith(start) for c in shown), f"NOT_RUN names a gone command: {start}"
    for command in EXIT_CODES:
        assert command in shown, f"EXIT_CODES names a gone command: {command}"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


#: Options hidden from --help on purpose, and why.
HIDDEN = {"flagedge serve --worker": "internal: how the supervisor starts its workers"}


def test_every_option_and_positional_of_every_command_has_help() -> None:
    missing = [
        name
        for parser in _parsers(build_parser())
        for action in parser._actions
        if not action.help or action.help == argparse.SUPPRESS
        if (name := f"{parser.prog} {'/'.join(action.option_strings) or action.dest}") not in HIDDEN
    ]
    assert missing == []
    walked = {parser.prog for parser in _parsers(build_parser())}
    assert {"flagedge", "flagedge serve", "flagedge kill", "flagedge bench load"} <= walked
