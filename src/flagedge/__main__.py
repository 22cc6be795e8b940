"""``python -m flagedge``: the ``flagedge`` command."""

from flagedge.cli import main

raise SystemExit(main())
