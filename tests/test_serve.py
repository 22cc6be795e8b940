"""One ``flagedge serve`` process (flagedge.serve.process, with the file source): the served
file reloads when it is written in place or replaced by a rename; a bad file is rejected
with its problems logged while the last good flags keep serving; SIGTERM drains and exits 0.
Real processes, text logs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flagedge.client import Client
from flagedge.serve import loop
from tests.support.documents import switch
from tests.support.processes import SERVING_TEXT, ServeProcess


def replace_by_rename(path: Path, content: str) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(content)
    os.replace(staging, path)


@pytest.fixture
def server(flag_file: Path) -> Iterator[tuple[ServeProcess, int]]:
    server = ServeProcess(
        f"--flags={flag_file}",
        "--port=0",
        "--management-port=0",
        "--workers=1",
        "--poll-interval=0.05",
        text=True,
    )
    port = int(server.next_line(SERVING_TEXT).group(2))
    yield server, port
    server.stop()


def test_the_served_file_reloads_on_rename_and_on_write(
    server: tuple[ServeProcess, int], flag_file: Path
) -> None:
    _, port = server
    with Client(f"127.0.0.1:{port}") as client:
        events = client.watch()
        assert next(events).initial
        assert client.evaluate("switch").value is True

        replace_by_rename(flag_file, json.dumps(switch("off")))
        change = next(events)
        assert (change.changed_keys, change.snapshot_version) == (("switch",), 2)
        assert client.evaluate("switch").value is False

        flag_file.write_text(json.dumps(switch("on")))
        assert next(events).snapshot_version == 3
        assert client.evaluate("switch").value is True


def test_an_invalid_file_is_rejected_and_the_last_good_flags_keep_serving(
    server: tuple[ServeProcess, int], flag_file: Path
) -> None:
    process, port = server
    broken = switch("nowhere")  # a defaultVariant naming no variant rejects the document
    replace_by_rename(flag_file, json.dumps(broken))
    process.next_line("rejected .*flags.json.*nowhere")  # the problem itself is logged
    replace_by_rename(flag_file, "{ not json")
    process.next_line("rejected .*flags.json")
    with Client(f"127.0.0.1:{port}") as client:
        result = client.evaluate("switch")
    assert (result.value, result.variant) == (True, "on")


def test_sigterm_drains_and_exits_cleanly(server: tuple[ServeProcess, int]) -> None:
    process, _ = server
    assert process.stop() == 0


# -- the event loop ---------------------------------------------------------------------------


async def _answer() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_the_event_loop_is_uvloop_when_installed_unless_asyncio_is_asked_for() -> None:
    pytest.importorskip("uvloop")
    assert loop.loop_name() == loop.loop_name("auto") == loop.loop_name("uvloop") == "uvloop"
    assert loop.loop_name("asyncio") == "asyncio"
    assert loop.run(_answer()) == "uvloop"
    assert loop.run(_answer(), "asyncio") == "asyncio"


def test_an_unknown_event_loop_is_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="auto, uvloop or asyncio, not 'trio'"):
        loop.loop_name("trio")
    main = _answer()
    with pytest.raises(ValueError):
        loop.run(main, "trio")
    assert main.cr_frame is None  # closed, not left to be reported as never awaited


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop.loop_name("auto") == "asyncio"
    assert loop.run(_answer()) == "asyncio"
    with pytest.raises(ImportError):
        loop.run(_answer(), "uvloop")
