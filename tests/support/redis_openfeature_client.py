"""A child process for tests/test_control_cli.py: the OpenFeature SDK with the flagd provider (RPC
mode) on one edge, port argv[1], reading boolean flag argv[2].

Protocol on stdout, one JSON object a line: the flag's details once the provider is ready
(with the keys of the configuration_change that follows provider_ready);
then, after the configuration_change that follows the connection's own, the changed keys
and fresh details.
"""

from __future__ import annotations

import json
import sys

from openfeature import api
from openfeature_client import connect


def main() -> None:
    port, flag = int(sys.argv[1]), sys.argv[2]
    client, flushed, changes = connect(port)

    def details() -> dict[str, object]:
        d = client.get_boolean_details(flag, True)
        reason = d.reason.value if hasattr(d.reason, "value") else d.reason
        return {"value": d.value, "variant": d.variant, "reason": str(reason)}

    print(json.dumps({**details(), "flushed": sorted(flushed)}), flush=True)
    changed = changes.get(timeout=60)
    print(json.dumps({"changed": sorted(changed), "after": details()}), flush=True)
    api.shutdown()


if __name__ == "__main__":
    main()
