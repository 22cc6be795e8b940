"""The one holder that swaps the serving Snapshot.

Readers take ``snap = holder.current`` once per request and never lock: installing is a
single reference assignment. Writers (file watcher, Redis subscriber) serialise on a lock
so that versions only move forward, then tell subscribers which keys changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .engine import BatchResult, CompiledFlag, Snapshot

__all__ = ["BatchResult", "CompiledFlag", "Snapshot", "SnapshotHolder"]

Listener = Callable[[Snapshot, frozenset[str]], None]


class SnapshotHolder:
    __slots__ = ("_listeners", "_lock", "current")

    def __init__(self, initial: Snapshot | None = None) -> None:
        self.current: Snapshot | None = initial
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def install(self, snap: Snapshot, *, force: bool = False) -> frozenset[str]:
        """Serve ``snap``; return the keys that changed. An older version is ignored
        (returns an empty set) unless ``force`` is given."""
        with self._lock:
            old = self.current
            if old is not None and snap.version < old.version and not force:
                return frozenset()
            changed = frozenset(snap.keys) if old is None else snap.changed_keys(old)
            self.current = snap
            listeners = tuple(self._listeners)
        for listener in listeners:
            listener(snap, changed)
        return changed

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(snapshot, changed_keys)`` after each install; returns unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
