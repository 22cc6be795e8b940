"""The README's Redis ACL users (section "Redis with least privilege"), as the redis.conf
lines a test's redis-server starts with, plus an administrator of the test's own: the
harness checks that the server answers (INFO) and reads what the edges wrote, which neither
documented user may do."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from .redis_server import RedisServer

README = Path(__file__).resolve().parents[2] / "README.md"
ADMIN = "test-admin"


def readme_acl() -> str:
    """The redis.conf lines under the README's ACL marker, as written there."""
    text = README.read_text()
    start = text.index("<!-- redis-acl:")
    block = re.search(r"```\n(.*?)```", text[start:], re.S)
    assert block is not None, "the README's ACL block is missing"
    return block.group(1)


@dataclass
class AclRedis:
    """A redis-server with the README's users; ``url(user)`` connects as one of them."""

    server: RedisServer
    edge_password: str
    writer_password: str
    admin_password: str

    def url(self, user: str, password: str) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.server.port}"

    @property
    def edge_url(self) -> str:
        return self.url("flagedge-edge-prod", self.edge_password)

    @property
    def writer_url(self) -> str:
        return self.url("flagedge-writer-prod", self.writer_password)


def start_acl_redis(directory: Path, extra: str = "") -> AclRedis:
    """Start it; ``extra`` redis.conf lines are appended (another user, say)."""
    edge, writer, admin = (secrets.token_urlsafe(16) for _ in range(3))
    config = readme_acl().replace("EDGE_PASSWORD", edge).replace("WRITER_PASSWORD", writer)
    config += f"user {ADMIN} on >{admin} ~* &* +@all\n{extra}"
    server = RedisServer(directory, config=config, username=ADMIN, password=admin).start()
    return AclRedis(server, edge, writer, admin)
