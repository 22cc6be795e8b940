"""``flagedge serve``: the one serve path.

ServeConfig (config.py) ── workers > 1 ──► supervisor.py: N worker processes
      │                                        each runs the same process below
      ▼
process.py: one process
    Source (sources.py)       FileSource | RedisSource ─► SnapshotHolder
    Listeners (listeners.py)  management, gRPC, flagd sync, ... over that holder
loop.py: the event loop (uvloop when installed)
"""

from __future__ import annotations

from .. import logs
from . import loop
from .config import ServeConfig
from .process import serve
from .supervisor import supervise

__all__ = ["ServeConfig", "run", "serve"]


def run(config: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT; the exit status."""
    logs.setup(config.log_level, config.log_format)
    if config.workers > 1 and not config.worker:
        return supervise(config)
    try:
        return loop.run(serve(config), config.event_loop)
    except KeyboardInterrupt:
        return 130
