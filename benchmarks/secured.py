"""Throwaway security material for the benchmark tools: a CA, a server certificate for
127.0.0.1 and localhost (EC P-256, made with the ``openssl`` command) and an auth file with
one token, plus the ``flagedge serve`` arguments and the load generator's Secure that use
them. Nothing here outlives the directory it is written to."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flagedge.auth import entry_for, new_token
from flagedge.bench.load import Secure


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Material:
    ca: Path
    cert: Path
    key: Path
    auth_file: Path
    token: str

    def serve_args(self, *, tokens: bool = True) -> list[str]:
        """``flagedge serve`` options: TLS, and the auth file unless ``tokens`` is False."""
        args = [f"--server-cert-path={self.cert}", f"--server-key-path={self.key}"]
        return [*args, f"--auth-file={self.auth_file}"] if tokens else args

    def secure(self, *, tokens: bool = True) -> Secure:
        return Secure(tls=True, ca=self.ca.read_bytes(), token=self.token if tokens else None)


def make(directory: Path) -> Material:
    """Write the material to ``directory``; RuntimeError when there is no openssl."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the secured benchmarks need the openssl command")
    directory.mkdir(parents=True, exist_ok=True)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        *("req", "-x509", *curve, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt"),
        *("-subj", "/CN=flagedge benchmark CA"),
        cwd=directory,
    )
    _openssl(
        *("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=edge"),
        cwd=directory,
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        *("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "san.ext"),
        cwd=directory,
    )
    token = new_token()
    auth = directory / "auth.json"
    auth.write_text(json.dumps({"tokens": [entry_for("benchmark", token, ["evaluate"])]}))
    return Material(directory / "ca.crt", directory / "server.crt", directory / "server.key",
                    auth, token)  # fmt: skip
