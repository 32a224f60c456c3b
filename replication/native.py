"""Which of the reader's hot modules run compiled (mypyc), and whether that is safe.

``scripts/build_native.py`` (run by ``scripts/setup.sh`` and the Dockerfile) compiles
:data:`COMPILED` with mypyc into extension modules next to their sources (git-ignored)
and records each source's SHA-256 in :data:`STAMP`. Python imports an extension module
in preference to the ``.py`` beside it, so one built from an older source would run old
code silently: :func:`check` (called when :mod:`replication` is imported, before any of
them) then warns and makes all of them load from their sources (the compiled modules
call each other directly, so it is all or none). Without the build, every module is
plain Python and works the same. ``PIPELINE_NATIVE=0`` in the environment sets the
build aside on purpose (to compare, e.g. ``bench/bench_hotpath.py``, or to rule it out).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
STAMP = PACKAGE / "_native.json"

# The modules compiled, in the package; the reader's per-event path runs through them.
COMPILED = (
    "batcher",
    "decoder",
    "frame_loop",
    "partitioner",
    "record_value",
    "rows",
    "tracker",
    "value_encoder",
)


class StaleNativeModules(UserWarning):
    """A compiled module does not match its source: the sources are used (rebuild)."""


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` files, ahead of their extension modules."""

    def __init__(self, package: str, directory: Path, modules: Sequence[str]) -> None:
        self.names = {f"{package}.{m}": directory / f"{m}.py" for m in modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        source = self.names.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def source_digest(module: str) -> str:
    return hashlib.sha256((PACKAGE / f"{module}.py").read_bytes()).hexdigest()


def extensions(module: str) -> list[Path]:
    """The extension files of ``module`` in the package (none when not built)."""
    return [
        path
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (path := PACKAGE / f"{module}{suffix}").exists()
    ]


def built() -> dict[str, str]:
    """Module -> the source digest it was compiled from, as the build recorded it."""
    try:
        recorded = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def stale() -> list[str]:
    """Compiled modules whose source changed since the build (or with no record of it)."""
    recorded = built()
    return [
        module
        for module in COMPILED
        if extensions(module) and recorded.get(module) != source_digest(module)
    ]


# Set to "0": run the sources even where an up-to-date build exists.
ENV = "PIPELINE_NATIVE"


def check(package: str = "replication") -> bool:
    """Use the sources if a compiled module would run outdated code, or when
    ``PIPELINE_NATIVE=0``; True if so."""
    if not any(extensions(module) for module in COMPILED):
        return False
    if os.environ.get(ENV) == "0":
        _use_sources(package)
        return True
    outdated = stale()
    if not outdated:
        return False
    warnings.warn(
        f"compiled replication modules {', '.join(outdated)} do not match their sources: "
        "running all of them from source; rebuild with `.venv/bin/python "
        "scripts/build_native.py` (or remove them with --clean)",
        StaleNativeModules,
        stacklevel=2,
    )
    _use_sources(package)
    return True


def _use_sources(package: str) -> None:
    if not any(isinstance(f, _FromSource) for f in sys.meta_path):
        sys.meta_path.insert(0, _FromSource(package, PACKAGE, COMPILED))
