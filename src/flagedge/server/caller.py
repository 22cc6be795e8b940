"""Who is calling: the one check every evaluation call passes, and what that caller may see.

    status.unary / server_stream / bidi_stream (one wrapper per handler, rpc._handlers)
        └─ Gate.admit(context): ``authorization`` metadata ─authorize(scope, value)─► Identity
               UNAUTHENTICATED (no detail) / PERMISSION_DENIED, counted by reason
        └─ streaming calls: Gate.stream(identity), at most ``max_streams`` open per token
               name, else RESOURCE_EXHAUSTED
        └─ CALLER.set(identity)   a ContextVar: grpc.aio runs every call in its own task, so
                                  each call sees its own caller and nothing leaks to the next
                                  (METADATA too: the metadata read once, for the selector)
    servicers ─ Views.of(snapshot) ─► the snapshot itself, or the caller's restricted view
                                      (Snapshot.visible, built once per snapshot and prefix set)

Without an auth file there is no Gate: handlers are wrapped exactly as before, CALLER keeps
its default (ANONYMOUS: every scope, every flag) and Views.of hands the snapshot back after
one ContextVar read. The check itself never sees a token again after hashing it, and logs
and metrics name the caller by its ``name`` from the auth file.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Final

from flagedge.auth import ANONYMOUS, Identity, Scope
from flagedge.errors import PermissionDenied, TooManyStreams, Unauthenticated
from flagedge.logs import event
from flagedge.metrics import EvaluationCounter, ServerMetrics
from flagedge.server.events import ChangeHub
from flagedge.snapshot import Snapshot, SnapshotHolder
from flagedge.wire import Limits

log = logging.getLogger("flagedge.auth")

CALLER: ContextVar[Identity] = ContextVar("flagedge_caller", default=ANONYMOUS)
# The call's metadata as the check read it. grpc.aio builds a new tuple on every
# invocation_metadata() (4 us and more, measured), so the flagd selector reads this one.
METADATA: ContextVar[Sequence[tuple[str, Any]] | None] = ContextVar(
    "flagedge_metadata", default=None
)

# Security.authorize(scope, authorization): the Identity, or Unauthenticated/PermissionDenied.
Authorize = Callable[[Scope, str | None], Identity]
Peer = Callable[[], str]  # the caller's address, as grpc's context.peer() gives it

DEFAULT_MAX_STREAMS: Final = 100
# A refusal is logged at most once per reason in this many seconds (every one is counted in
# flagedge_auth_failures_total): a client retrying a revoked token must not flood the log.
LOG_EVERY: Final = 60.0


def caller() -> Identity:
    """The identity of the call being served (ANONYMOUS without an auth file)."""
    return CALLER.get()


def metadata_of(context: Any) -> Sequence[tuple[str, Any]]:
    """The call's metadata: the tuple the token check already read, or grpc's."""
    found = METADATA.get()
    return context.invocation_metadata() if found is None else found


class Gate:
    """The token check of one listener, for one scope (evaluate, sync)."""

    __slots__ = (
        "_authorize",
        "_calls",
        "_clock",
        "_failures",
        "_logged",
        "_open",
        "_refused_streams",
        "max_streams",
        "scope",
    )

    def __init__(
        self,
        authorize: Authorize,
        scope: Scope,
        *,
        max_streams: int = DEFAULT_MAX_STREAMS,
        metrics: ServerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authorize = authorize
        self.scope = scope
        self.max_streams = max_streams  # 0: no limit
        metrics = metrics or ServerMetrics()
        # The counters are the metrics' own dicts: one increment per call, folded at scrape.
        self._calls = metrics.client_calls
        self._failures = metrics.auth_failures
        self._refused_streams = metrics.streams_refused
        # Open streams by name, one count per process: every listener's Gate shares it.
        self._open = metrics.client_streams
        self._logged: dict[str, float] = {}
        self._clock = clock

    def admit(self, context: Any) -> Identity:
        """The caller of a call (its ``authorization`` metadata), or the refusal to raise;
        the metadata read is kept in METADATA for the rest of the call."""
        metadata = context.invocation_metadata() or ()
        METADATA.set(metadata)
        return self.check(metadata, context.peer)

    def check(self, metadata: Iterable[tuple[str, Any]] | None, peer: Peer) -> Identity:
        """``admit`` on a call's metadata; ``peer()`` names the caller's address in a log
        line, and is only asked when the call is refused."""
        authorization = None
        for key, value in metadata or ():
            if key == "authorization":
                authorization = value
                break
        try:
            identity = self._authorize(self.scope, authorization)
        except Unauthenticated as exc:
            self._refused(exc.reason, peer)
            raise
        except PermissionDenied:
            self._refused("scope", peer)
            raise
        calls = self._calls
        calls[identity.name] = calls.get(identity.name, 0) + 1
        return identity

    def _refused(self, reason: str, peer: Peer, name: str | None = None) -> None:
        self._failures[reason] = self._failures.get(reason, 0) + 1
        now = self._clock()
        if now - self._logged.get(reason, -LOG_EVERY) < LOG_EVERY:
            return
        self._logged[reason] = now
        who = f"{name!r} " if name else ""
        address = peer()
        event(
            log,
            logging.WARNING,
            "auth_refused",
            "refused a %s call from %s%s: %s (further refusals for this reason are counted in "
            "flagedge_auth_failures_total and logged at most once a minute)",
            self.scope.value,
            who,
            address,
            _WORDS.get(reason, reason),
            reason=reason,
            scope=self.scope.value,
            peer=address,
            **({"client": name} if name else {}),
        )

    @contextlib.contextmanager
    def stream(self, identity: Identity, context: Any) -> Iterator[None]:
        """Hold one of ``identity``'s streaming slots for the life of a streaming call."""
        name = identity.name
        held = self._open.get(name, 0)
        if self.max_streams and held >= self.max_streams:
            self._refused_streams[name] = self._refused_streams.get(name, 0) + 1
            self._refused("streams", context.peer, name)
            raise TooManyStreams(name, self.max_streams)
        self._open[name] = held + 1
        try:
            yield
        finally:
            self._open[name] -= 1

    def open_streams(self, name: str) -> int:
        return self._open.get(name, 0)


def counted(metrics: ServerMetrics, authorize: Callable[..., Identity]) -> Callable[..., Identity]:
    """``authorize`` with its outcomes counted as the Gate counts them (calls by client name,
    refusals by reason), for the HTTP listeners, which read their headers themselves."""
    calls, failures = metrics.client_calls, metrics.auth_failures

    def check(*args: Any) -> Identity:
        try:
            identity = authorize(*args)
        except Unauthenticated as exc:
            failures[exc.reason] = failures.get(exc.reason, 0) + 1
            raise
        except PermissionDenied:
            failures["scope"] = failures.get("scope", 0) + 1
            raise
        calls[identity.name] = calls.get(identity.name, 0) + 1
        return identity

    return check


_WORDS: Final = {
    "missing": "no authorization metadata",
    "malformed": "authorization is not 'Bearer TOKEN'",
    "unknown": "a token the auth file does not list",
    "scope": "the token lacks the scope",
    "streams": "the token's limit of open streams is reached",
}


class Views:
    """What the caller may see of a snapshot: everything, or the view its flag prefixes
    allow, built on first use and kept until the snapshot is replaced."""

    __slots__ = ("_base", "_views")

    def __init__(self) -> None:
        self._base: Snapshot | None = None
        self._views: dict[tuple[str, ...], Snapshot] = {}

    def of(self, snap: Snapshot) -> Snapshot:
        prefixes = CALLER.get().flags
        if not prefixes:  # every flag: the common case costs one ContextVar read
            return snap
        if snap is not self._base:
            self._base, self._views = snap, {}
        view = self._views.get(prefixes)
        if view is None:
            view = self._views[prefixes] = snap.visible(prefixes)
        return view


class Evaluating:
    """What every evaluation servicer (native.py, flagd.py) holds: the holder it reads
    through the caller's ``views``, the change hub, the request limits, the clock, and the
    counter each Resolution is recorded in."""

    def __init__(
        self,
        holder: SnapshotHolder,
        hub: ChangeHub,
        limits: Limits,
        *,
        clock: Callable[[], int],
        evaluations: EvaluationCounter | None,
        views: Views | None,
    ) -> None:
        self.holder = holder
        self.views = views or Views()
        self.hub = hub
        self.limits = limits
        self.clock = clock
        # Counting is an append of the shared Resolution (metrics.py: no lock, no allocation).
        self.evaluations = evaluations or EvaluationCounter()
        self._count = self.evaluations.record
