"""Generate src/flagedge/_proto from proto/ with grpcio-tools, or check that it is current.

    python scripts/gen_proto.py          # regenerate in place
    python scripts/gen_proto.py --check  # exit 1 if the committed code differs from a fresh run

protoc writes imports as if proto/ were on sys.path (``from flagd.evaluation.v1 import ...``);
the generated modules live under the ``flagedge._proto`` package instead, so every such import
is rewritten. Generation is deterministic, which is what makes --check meaningful.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "src" / "flagedge" / "_proto"
PACKAGE = "flagedge._proto"
HEADER = '"""Generated from proto/ by scripts/gen_proto.py. Do not edit by hand."""\n'


def _top_level_packages() -> list[str]:
    return sorted(p.name for p in PROTO_DIR.iterdir() if p.is_dir())


def generate(out: Path) -> None:
    from grpc_tools import protoc  # a dev dependency; imported late so --help works without it

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    pattern = re.compile(
        r"^(from|import) (" + "|".join(map(re.escape, _top_level_packages())) + r")(\.|\s)",
        re.MULTILINE,
    )
    for path in sorted(out.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text()
        fixed = pattern.sub(lambda m: f"{m.group(1)} {PACKAGE}.{m.group(2)}{m.group(3)}", text)
        path.write_text(fixed)
    # Every directory becomes a package.
    for directory in [out, *sorted(p for p in out.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text(HEADER)


def _differences(a: Path, b: Path) -> list[str]:
    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    fa, fb = files(a), files(b)
    out = [f"only in committed tree: {n}" for n in sorted(fa - fb)]
    out += [f"missing from committed tree: {n}" for n in sorted(fb - fa)]
    out += [
        f"differs: {n}" for n in sorted(fa & fb) if not filecmp.cmp(a / n, b / n, shallow=False)
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        if args.check:
            problems = _differences(OUT_DIR, fresh) if OUT_DIR.exists() else ["not generated"]
            for line in problems:
                print(f"gen_proto: {line}", file=sys.stderr)
            if problems:
                print("gen_proto: run scripts/gen_proto.sh to regenerate", file=sys.stderr)
                return 1
            return 0
        if OUT_DIR.exists():
            shutil.rmtree(OUT_DIR)
        shutil.copytree(fresh, OUT_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
