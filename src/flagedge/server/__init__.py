"""The gRPC servicers and the HTTP front doors, over one SnapshotHolder.

    holder (SnapshotHolder) --> start_server (rpc.py) --> RunningServer
                                  |- native.py      flagedge.v1.Evaluation
                                  |- flagd.py       flagd.evaluation.v2 / v1 Service
                                  '- events.py      holder installs -> event streams
                            --> start_sync_server (rpc.py) --> RunningSyncServer
                                  '- sync.py        flagd.sync.v1.FlagSyncService, its fan-out
    status.py                     the one mapping from errors to status codes
    selector.py                   the Flagd-Selector header
    http.py                       HTTP on aiohttp's low-level server: bind, limits, routes
      |- management.py            /healthz, /readyz, /metrics
      '- web.py                   the OFREP port: ofrep.py (OFREP, SSE) and connect.py
                                  (flagd.py's servicers over Connect JSON)

flagedge/serve/ runs these as listeners of one process; wire.py converts values.
"""

from flagedge.server.rpc import RunningServer, start_server
from flagedge.wire import Limits

__all__ = ["Limits", "RunningServer", "start_server"]
