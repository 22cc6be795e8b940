"""A child process for test_security_serve: the OpenFeature SDK with the flagd provider in RPC
mode connecting to a secured flagedge exactly as the README shows: TLS trusting a CA, and a
token on every call.

    python openfeature_secure_client.py HOST PORT CA_PATH TOKEN_FILE FLAG...

Prints one JSON object: for each FLAG, its boolean details (value, variant, reason, error).
Its own process because the provider bundles its own compiled flagd protos.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature_client import details


def main() -> None:
    host, port, ca_path, token_path, *flags = sys.argv[1:]
    ca = Path(ca_path).read_bytes()
    token = Path(token_path).read_text().strip()
    api.set_provider_and_wait(
        FlagdProvider(
            host=host,
            port=int(port),
            resolver_type=ResolverType.RPC,
            deadline_ms=5000,
            channel_credentials=grpc.composite_channel_credentials(
                grpc.ssl_channel_credentials(ca),
                grpc.access_token_call_credentials(token),
            ),
        )
    )
    client = api.get_client()
    print(json.dumps({flag: details(client.get_boolean_details(flag, False)) for flag in flags}))
    api.shutdown()


if __name__ == "__main__":
    main()
