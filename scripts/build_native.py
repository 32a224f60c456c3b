"""Compile the reader's hot modules with mypyc, in place (``replication/*.so``, git-ignored).

    .venv/bin/python scripts/build_native.py            # build if any source changed
    .venv/bin/python scripts/build_native.py --force    # build anyway
    .venv/bin/python scripts/build_native.py --clean    # remove them: pure Python again

The modules are :data:`replication.native.COMPILED`; mypyc ships with mypy (a dev
dependency) and needs a C compiler and the Python headers. Each source's SHA-256 is
recorded in ``replication/_native.json``; when a source no longer matches, importing
:mod:`replication` warns and runs all of them from source until the next build. Generated C and objects go to
``.cache/native/``. If the build fails, the compiled modules are removed and the
pure-Python ones are used (the script exits 1 so the caller can tell).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# replication/native.py alone: the package's import checks the very files this script
# replaces.
_spec = importlib.util.spec_from_file_location(
    "_replication_native", ROOT / "replication" / "native.py"
)
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

WORK = ROOT / ".cache" / "native"
GROUP = "replication._native"  # the shared library lands in the package too

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

sources, target = sys.argv[1].split(","), sys.argv[2]
setup(
    name="replication-native",
    ext_modules=mypycify(sources, opt_level="3", group_name="{group}", target_dir=target),
    script_args=[
        "build_ext", "--inplace", "--build-temp", target + "/obj", "--build-lib", target + "/lib"
    ],
)
"""


def clean() -> None:
    for path in native.PACKAGE.iterdir():
        if path.name.startswith(("_native__mypyc.", *(f"{m}." for m in native.COMPILED))) and (
            path.suffix in {".so", ".pyd"}
        ):
            path.unlink()
    native.STAMP.unlink(missing_ok=True)


def up_to_date() -> bool:
    recorded = native.built()
    return all(
        native.extensions(m) and recorded.get(m) == native.source_digest(m) for m in native.COMPILED
    )


def build() -> int:
    clean()
    WORK.mkdir(parents=True, exist_ok=True)
    sources = ",".join(f"replication/{m}.py" for m in native.COMPILED)
    digests = {m: native.source_digest(m) for m in native.COMPILED}
    proc = subprocess.run(
        [sys.executable, "-c", _SETUP.format(group=GROUP), sources, str(WORK / "c")],
        cwd=ROOT,
        env={**os.environ, "MYPY_FORCE_COLOR": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        clean()
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        print("mypyc build failed: the pure-Python modules are used", file=sys.stderr)
        return 1
    native.STAMP.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")
    print(f"compiled with mypyc: {', '.join(native.COMPILED)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="build even if up to date")
    ap.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = ap.parse_args(argv)
    if args.clean:
        clean()
        print("removed the compiled modules: pure Python")
        return 0
    if not args.force and up_to_date():
        print("compiled modules up to date")
        return 0
    return build()


if __name__ == "__main__":
    sys.exit(main())
