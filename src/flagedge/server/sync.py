"""flagd's sync service for in-process providers: ``flagd.sync.v1.FlagSyncService``
(docs/flagd-compat.md section 2).

    SyncFlags       the whole flag configuration at once, then again, whole, after every
                    change; each message also carries ``sync_context``
    FetchAllFlags   the whole flag configuration, once
    GetMetadata     deprecated, but the Python provider calls it before SyncFlags

    SnapshotHolder.install (any thread)
        ──call_soon_threadsafe──► SyncHub.wake (event loop): set every open stream's slot
    each SyncFlags stream: clear its slot, send the newest snapshot's rendering, wait
        a slot says only "something changed", it is not a queue: a reader too slow to take
        every state skips to the newest, never makes the edge hold more than the message
        being written, and never delays the others
    Renderings: rendered (rendering.py) and serialized once per snapshot and selector,
        whichever stream asks first; each flag's JSON is reused while its CompiledFlag is
        the same object, so a kill switch re-renders one flag, not the whole set

Every call enters through :meth:`FlagSyncServicer.admit`, the one place where a per-call
check (authentication, scope "sync") belongs; then :meth:`FlagSyncServicer.selection` reads
its selector. The configuration is the served state, the definitions with their ops
overrides written in, so in-process providers answer kill switches and rollouts as the edge
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from flagedge._proto.flagd.sync.v1 import sync_pb2
from flagedge.compiler import CompiledFlag
from flagedge.rendering import render_flag
from flagedge.server import status
from flagedge.server.flagd import STREAM_DEADLINE
from flagedge.server.selector import ALL, Selection, selection_for
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.wire import fill_struct

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = "flagd.sync.v1.FlagSyncService"
# Renderings kept per snapshot, by selector. Selectors are the caller's to choose, so beyond
# this many the others are rendered for each call instead of remembered.
MAX_SELECTIONS = 64


def _dump(value: Any) -> bytes:
    """JSON bytes. orjson refuses what a YAML document may hold (integers beyond 64 bits,
    non-string keys, lone surrogates); the standard library writes those instead."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=True).encode()


@dataclass(frozen=True, slots=True)
class Rendering:
    """One snapshot's configuration for one selector, ready for the wire."""

    text: str  # flag_configuration: {"flags": {...}}
    sync_message: bytes  # a serialized SyncFlagsResponse (with sync_context)
    fetch_message: bytes  # a serialized FetchAllFlagsResponse


class Renderings:
    """The current snapshot's renderings by selector, and each flag's JSON by identity."""

    def __init__(self, source: str | None, sync_context: Mapping[str, Any]) -> None:
        self.source = source
        self.sync_context = sync_context
        self._snapshot: Snapshot | None = None
        self._by_selection: dict[tuple[str | None, str | None], Rendering] = {}
        # key -> (the CompiledFlag rendered, b'"key":{...}'): reused while the flag is the same
        self._fragments: dict[str, tuple[CompiledFlag, bytes]] = {}

    def get(self, snap: Snapshot, selection: Selection) -> Rendering:
        if snap is not self._snapshot:
            self._fragments = self._fragments_of(snap)
            self._snapshot, self._by_selection = snap, {}
        which = (selection.flag_set_id, selection.source)
        found = self._by_selection.get(which)
        if found is None:
            found = self._render(snap, selection)
            if len(self._by_selection) < MAX_SELECTIONS:
                self._by_selection[which] = found
        return found

    def _fragments_of(self, snap: Snapshot) -> dict[str, tuple[CompiledFlag, bytes]]:
        old = self._fragments
        out: dict[str, tuple[CompiledFlag, bytes]] = {}
        for key, flag in snap.flags.items():
            kept = old.get(key)
            if kept is not None and kept[0] is flag:
                out[key] = kept
            else:
                out[key] = (flag, _dump(key) + b":" + _dump(render_flag(flag, self.source)))
        return out

    def _render(self, snap: Snapshot, selection: Selection) -> Rendering:
        source = self.source
        parts = [
            fragment
            for flag, fragment in self._fragments.values()
            if selection is ALL or selection.admits(flag.metadata, source)
        ]
        text = (b'{"flags":{' + b",".join(parts) + b"}}").decode()
        message = sync_pb2.SyncFlagsResponse(flag_configuration=text)
        fill_struct(message.sync_context, self.sync_context)
        return Rendering(
            text,
            message.SerializeToString(),
            sync_pb2.FetchAllFlagsResponse(flag_configuration=text).SerializeToString(),
        )


class SyncHub:
    """Wakes every open SyncFlags stream when the holder installs a changed snapshot."""

    def __init__(self, holder: SnapshotHolder, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: set[asyncio.Event] = set()
        self.closed = False
        self._unsubscribe = holder.subscribe(self._on_install)

    def _on_install(self, snapshot: Snapshot, changed: frozenset[str]) -> None:
        if changed:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
                self._loop.call_soon_threadsafe(self.wake)

    def wake(self) -> None:
        for slot in self._slots:
            slot.set()

    @contextlib.contextmanager
    def slot(self) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._slots.add(event)
        try:
            yield event
        finally:
            self._slots.discard(event)

    @property
    def streams(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """End every stream (each returns OK) and refuse new ones the same way."""
        if not self.closed:
            self.closed = True
            self._unsubscribe()
            self.wake()


class FlagSyncServicer:
    def __init__(
        self,
        holder: SnapshotHolder,
        hub: SyncHub,
        renderings: Renderings,
        *,
        stream_deadline: float = 0.0,
    ) -> None:
        self.holder = holder
        self.hub = hub
        self.renderings = renderings
        self.stream_deadline = stream_deadline

    def admit(self, context: Context) -> None:
        """Every call starts here, before it reads anything: the one place for a per-call
        check (credentials, scope "sync"), which raises to refuse the call."""

    @staticmethod
    def selection(context: Context, selector: str) -> Selection:
        """The flags a call may see: the Flagd-Selector header, else the request's field
        (INVALID_ARGUMENT when malformed)."""
        return selection_for(context.invocation_metadata(), selector)

    async def SyncFlags(
        self, request: sync_pb2.SyncFlagsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        self.admit(context)
        selection = self.selection(context, request.selector)
        hub = self.hub
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.stream_deadline if self.stream_deadline > 0 else None
        last: bytes | None = None
        with hub.slot() as wake:
            while not hub.closed:
                # Clear before reading the holder: a change that lands after this line sets
                # the slot again, so the wait below cannot miss it.
                wake.clear()
                snap = status.current(self.holder)
                message = self.renderings.get(snap, selection).sync_message
                if message != last:  # a change outside the selection changes nothing
                    last = message
                    yield message
                if ends is None:
                    await wake.wait()
                    continue
                left = ends - loop.time()
                if left > 0:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(left):
                            await wake.wait()
                if loop.time() >= ends and not hub.closed:
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, STREAM_DEADLINE)

    def FetchAllFlags(self, request: sync_pb2.FetchAllFlagsRequest, context: Context) -> bytes:
        self.admit(context)
        selection = self.selection(context, request.selector)
        return self.renderings.get(status.current(self.holder), selection).fetch_message

    def GetMetadata(
        self, request: sync_pb2.GetMetadataRequest, context: Context
    ) -> sync_pb2.GetMetadataResponse:
        self.admit(context)
        response = sync_pb2.GetMetadataResponse()
        fill_struct(response.metadata, self.renderings.sync_context)
        return response
