"""Generates the gRPC stubs of `scop.v1` from the repository's protos.

The stubs are committed under `src/scop/v1/`, so that installing the package
needs neither grpcio-tools nor the protos. Run this after changing a file of
`proto/scop/v1` (with grpcio-tools installed):

    python client/python/generate_stubs.py          # rewrite src/scop/v1
    python client/python/generate_stubs.py --check  # fail if they are stale

`cargo xtask test` runs the check.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
TARGET = HERE / "src" / "scop" / "v1"
HEADER = "# Generated from proto/scop/v1 by client/python/generate_stubs.py; do not edit.\n"


def generate(out: Path) -> list[str]:
    """Writes the stubs of every proto of scop/v1 into `out/scop/v1`; returns their names."""
    from grpc_tools import protoc  # only needed here, not by the package

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "scop" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / 'scop' / 'v1'}")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + ", ".join(protos))
    generated = out / "scop" / "v1"
    (generated / "__init__.py").write_text("")
    names = []
    for path in sorted(generated.iterdir()):
        path.write_text(HEADER + path.read_text())
        names.append(path.name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when src/scop/v1 differs from the protos")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        names = generate(Path(tmp))
        fresh = Path(tmp) / "scop" / "v1"
        existing = {p.name for p in TARGET.glob("*") if p.is_file()} if TARGET.exists() else set()
        stale = sorted(n for n in names if n not in existing or not filecmp.cmp(fresh / n, TARGET / n, shallow=False))
        extra = sorted(existing - set(names))
        if check:
            if stale or extra:
                print(
                    "the Python stubs in client/python/src/scop/v1 do not match proto/scop/v1 "
                    f"(differ or missing: {', '.join(stale) or 'none'}; not generated: {', '.join(extra) or 'none'}); "
                    "run `python client/python/generate_stubs.py`",
                    file=sys.stderr,
                )
                return 1
            print(f"the Python stubs match proto/scop/v1 ({len(names)} files)")
            return 0
        TARGET.mkdir(parents=True, exist_ok=True)
        for name in extra:
            (TARGET / name).unlink()
        for name in names:
            shutil.copyfile(fresh / name, TARGET / name)
        print(f"wrote {len(names)} files to {TARGET.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
