"""``python -m flagedge.server``: the same as ``flagedge serve`` (workers start this way)."""

from flagedge.server.app import main

raise SystemExit(main())
