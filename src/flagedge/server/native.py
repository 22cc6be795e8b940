"""``flagedge.v1.Evaluation``: the native API (proto/flagedge/v1/flagedge.proto).

Evaluation problems are data here: a missing flag or a type mismatch comes back as a result
with reason ERROR and an error code, never as a failed call. Only an unacceptable request
(status.py: INVALID_ARGUMENT) or an expired deadline fails a call.

EvaluateBatch is the fast path. The core returns packed columns (variant index per cell,
reason and error bytes), which go onto the wire as they are; the per-flag variant tables are
built once per snapshot and reused until the snapshot changes.

A caller whose token is limited to some flag prefixes (server/caller.py) is served a view of
the snapshot holding only those flags: the others answer FLAG_NOT_FOUND, are absent from
EvaluateAll and from EvaluateBatch's default keys, and never appear in its Watch events.

A request names at most ``max_keys`` flags (a key named twice is evaluated once). A value
the wire cannot carry (text with a lone surrogate, in a snapshot a library caller built)
fails only its own result, never the answer around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from flagedge._proto.flagedge.v1 import flagedge_pb2 as pb
from flagedge.errors import DeadlineExpired, LimitExceeded
from flagedge.metrics import EvaluationCounter
from flagedge.model import Resolution
from flagedge.server.caller import CALLER, Evaluating, Views
from flagedge.server.events import ChangeHub, Shutdown
from flagedge.server.status import current
from flagedge.snapshot import BatchResult, Snapshot, SnapshotHolder
from flagedge.wire import (
    ERROR_TO_WIRE,
    REASON_TO_WIRE,
    TYPE_FROM_WIRE,
    Limits,
    clean_text,
    clean_value,
    context_to_dict,
    fill_struct,
    set_value,
)

Context = grpc.aio.ServicerContext[Any, Any]


def fill_result(out: pb.Result, resolution: Resolution) -> None:
    """Put ``resolution`` into ``out``; text the wire cannot carry is cleaned, and should
    that fail too, ``out`` says GENERAL instead of failing the call."""
    try:
        _fill(out, resolution)
    except (UnicodeError, ValueError, TypeError):
        out.Clear()
        try:
            _fill(out, _cleaned(resolution))
        except (UnicodeError, ValueError, TypeError):
            out.Clear()
            out.key = clean_text(resolution.key)
            out.reason = pb.REASON_ERROR
            out.error_code = pb.ERROR_CODE_GENERAL
            out.error_message = "the answer cannot be sent"


def _cleaned(r: Resolution) -> Resolution:
    return Resolution(
        clean_text(r.key),
        clean_value(r.value),
        None if r.variant is None else clean_text(r.variant),
        r.reason,
        r.error_code,
        None if r.error_message is None else clean_text(r.error_message),
        clean_value(dict(r.metadata)),
    )


def _fill(out: pb.Result, resolution: Resolution) -> None:
    out.key = resolution.key
    if resolution.value is not None:
        set_value(out.value, resolution.value)
    if resolution.variant is not None:
        out.variant = resolution.variant
    out.reason = REASON_TO_WIRE.get(resolution.reason, pb.REASON_DEFAULT)  # type: ignore[assignment]
    if resolution.error_code is not None:
        out.error_code = ERROR_TO_WIRE.get(resolution.error_code, pb.ERROR_CODE_GENERAL)  # type: ignore[assignment]
        if resolution.error_message:
            out.error_message = resolution.error_message
    fill_struct(out.metadata, resolution.metadata)


class _Tables:
    """Variant tables for one snapshot, built on first use."""

    __slots__ = ("snapshot", "tables")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.tables: dict[str, pb.FlagTable] = {}


class NativeServicer(Evaluating):
    def __init__(
        self,
        holder: SnapshotHolder,
        hub: ChangeHub,
        limits: Limits,
        *,
        clock: Callable[[], int],
        server_id: str,
        evaluations: EvaluationCounter | None = None,
        views: Views | None = None,
    ) -> None:
        super().__init__(holder, hub, limits, clock=clock, evaluations=evaluations, views=views)
        self.server_id = server_id
        self._tables: _Tables | None = None

    def Evaluate(self, request: pb.EvaluateRequest, context: Context) -> pb.EvaluateResponse:
        snap = self.views.of(current(self.holder))
        resolution = snap.evaluate(
            request.flag_key,
            context_to_dict(request.context, self.limits),
            self.clock(),
            TYPE_FROM_WIRE.get(request.type),
        )
        self._count(resolution)
        out = pb.EvaluateResponse(snapshot_version=snap.version)
        fill_result(out.result, resolution)
        return out

    def EvaluateAll(
        self, request: pb.EvaluateAllRequest, context: Context
    ) -> pb.EvaluateAllResponse:
        snap = self.views.of(current(self.holder))
        user_context = context_to_dict(request.context, self.limits)
        keys = self._keys(request.keys) or None
        out = pb.EvaluateAllResponse(snapshot_version=snap.version)
        results = out.results
        resolutions = snap.evaluate_all(user_context, self.clock(), keys=keys)
        self.evaluations.record_many(resolutions)
        for resolution in resolutions:
            fill_result(results.add(), resolution)
        return out

    def EvaluateBatch(
        self, request: pb.EvaluateBatchRequest, context: Context
    ) -> pb.EvaluateBatchResponse:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired
        base = current(self.holder)
        snap = self.views.of(base)
        self._keys(request.flag_keys, dedupe=False)  # the answer has a column per key named
        keys = tuple(request.flag_keys) or snap.keys
        cells = len(keys) * len(request.contexts)
        if cells > self.limits.max_batch_cells:
            raise LimitExceeded(
                f"batch of {len(keys)} flags x {len(request.contexts)} contexts is {cells} "
                f"cells, over the limit of {self.limits.max_batch_cells}",
                "max-batch-cells",
            )
        limits = self.limits
        contexts = [context_to_dict(c, limits) for c in request.contexts]
        batch = snap.evaluate_batch(keys, contexts, self.clock())
        self.evaluations.record_batch(batch)
        out = pb.EvaluateBatchResponse(
            reasons=batch.reasons,
            error_codes=batch.errors,
            context_count=len(contexts),
            snapshot_version=snap.version,
            request_id=request.request_id,
        )
        out.flags.extend(self._flag_tables(base, snap, batch))
        out.variant_index.extend(batch.variant_index)
        return out

    def _keys(self, keys: Sequence[str], *, dedupe: bool = True) -> list[str]:
        """The keys a request names, at most max_keys of them; each once, in first-named
        order (EvaluateAll, Watch), or as named (EvaluateBatch: a column per key)."""
        if len(keys) > self.limits.max_keys:
            raise LimitExceeded(
                f"request names {len(keys)} flag keys, over the limit of {self.limits.max_keys}",
                "max-keys",
            )
        return list(dict.fromkeys(keys)) if dedupe else list(keys)

    def _flag_tables(
        self, base: Snapshot, snap: Snapshot, batch: BatchResult
    ) -> list[pb.FlagTable]:
        """The variant tables of ``batch`` (evaluated on ``snap``, which is ``base`` or a
        caller's view of it). Cached per ``base``: a visible flag's table is the same in
        every view, and only flags ``snap`` has are cached (an absent one's table is empty)."""
        cache = self._tables
        if cache is None or cache.snapshot is not base:
            cache = self._tables = _Tables(base)
        tables = []
        flags = snap.flags
        for i, key in enumerate(batch.keys):
            # Only a flag this caller can see may come from (or go into) the cache: a key
            # it cannot see has an empty table here and a full one in the cache.
            table = cache.tables.get(key) if key in flags else None
            if table is None:
                try:
                    table = _flag_table(key, batch.variant_tables[i], batch.value_tables[i])
                except (UnicodeError, ValueError, TypeError):
                    variants = [clean_text(v) for v in batch.variant_tables[i]]
                    values = [clean_value(v) for v in batch.value_tables[i]]
                    table = _flag_table(clean_text(key), variants, values)
                if key in flags:
                    cache.tables[key] = table
            tables.append(table)
        return tables

    async def Watch(
        self, request: pb.WatchRequest, context: Context
    ) -> AsyncIterator[pb.WatchEvent]:
        wanted = frozenset(self._keys(request.keys))
        who = CALLER.get()
        with self.hub.subscribe() as queue:
            snap = current(self.holder)
            yield pb.WatchEvent(
                snapshot_version=0 if snap is None else snap.version,
                initial=True,
                server_id=self.server_id,
            )
            while True:
                event = await queue.get()
                if isinstance(event, Shutdown):
                    return
                changed = event.changed & wanted if wanted else event.changed
                if changed and who.flags:
                    changed = frozenset(k for k in changed if who.sees(k))
                if changed:
                    names = sorted(changed)
                    try:
                        message = pb.WatchEvent(changed_keys=names)
                    except (UnicodeError, ValueError):
                        message = pb.WatchEvent(changed_keys=[clean_text(k) for k in names])
                    message.snapshot_version = event.current.version
                    message.server_id = self.server_id
                    yield message


def _flag_table(key: str, variants: Sequence[str], values: Sequence[Any]) -> pb.FlagTable:
    table = pb.FlagTable(key=key, variants=variants)
    for value in values:
        set_value(table.values.add(), value)
    return table
