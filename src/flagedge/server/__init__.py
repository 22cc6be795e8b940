"""The gRPC edge: flagedge's native API and flagd's evaluation protocol over one port.

holder (SnapshotHolder) --> start_server --> RunningServer
                              |- native.py      flagedge.v1.Evaluation
                              |- flagd.py       flagd.evaluation.v2 / v1 Service
                              |- status.py      the one mapping from errors to status codes
                              |- convert.py     Struct <-> dict, request limits
                              |- selector.py    the Flagd-Selector header
                              |- events.py      holder installs -> event streams
                              '- management.py  /healthz, /readyz
app.py: ``flagedge serve`` (options, workers, file watching, signals)
"""

from flagedge.server.convert import Limits
from flagedge.server.server import RunningServer, start_server

__all__ = ["Limits", "RunningServer", "start_server"]
