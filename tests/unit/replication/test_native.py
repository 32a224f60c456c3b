"""The mypyc-compiled hot modules (scripts/build_native.py): really used when built,
set aside for their sources when stale, and the pure-Python modules pass the same tests."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replication import native

ROOT = Path(__file__).resolve().parents[3]
# The tests of the compiled modules, run once more against their pure-Python sources.
PURE_TESTS = [
    "tests/unit/replication/test_frame_loop.py",
    "tests/unit/replication/test_values.py",
    "tests/unit/replication/test_values_binary.py",
    "tests/unit/replication/test_tracker.py",
    "tests/unit/replication/test_golden.py",
]


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_built_modules_are_the_ones_imported() -> None:
    """When the build ran (setup.sh does), every listed module must come from it: the tests
    then exercise the compiled code the reader runs. PIPELINE_REQUIRE_NATIVE=1 also fails
    when nothing was built (CI on a machine with a compiler)."""
    if not native.built():
        if os.environ.get("PIPELINE_REQUIRE_NATIVE") == "1":
            pytest.fail("PIPELINE_REQUIRE_NATIVE=1 but scripts/build_native.py built nothing")
        pytest.skip("the hot modules are not compiled (scripts/build_native.py)")
    assert native.stale() == []
    for module in native.COMPILED:
        imported = importlib.import_module(f"replication.{module}")
        assert _is_extension(imported.__file__), (module, imported.__file__)


def test_stale_compiled_modules_give_way_to_their_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "stalepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "hotpath.py").write_text("X = 1\n")
    monkeypatch.setattr(native, "PACKAGE", package)
    monkeypatch.setattr(native, "STAMP", package / "_native.json")
    monkeypatch.setattr(native, "COMPILED", ("hotpath",))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert native.check("stalepkg") is False  # nothing compiled: pure Python anyway
    # An "extension module" that would crash if loaded, built from another source.
    (package / f"hotpath{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    native.STAMP.write_text(f'{{"hotpath": "{native.source_digest("hotpath")}"}}')
    assert native.check("stalepkg") is False  # up to date
    (package / "hotpath.py").write_text("X = 2\n")
    with pytest.warns(native.StaleNativeModules, match=r"hotpath .*build_native\.py"):
        assert native.check("stalepkg") is True
    module = importlib.import_module("stalepkg.hotpath")
    assert module.X == 2  # the source, not the stale build
    assert module.__file__ == str(package / "hotpath.py")
    sys.modules.pop("stalepkg.hotpath", None)
    sys.modules.pop("stalepkg", None)


def test_pipeline_native_0_runs_the_sources() -> None:
    code = (
        "import replication.frame_loop, replication.value_encoder; "
        "print(replication.frame_loop.__file__); print(replication.value_encoder.__file__)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, native.ENV: "0"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    files = proc.stdout.split()
    assert files == [
        str(ROOT / "replication" / "frame_loop.py"),
        str(ROOT / "replication" / "value_encoder.py"),
    ]


def test_pure_python_modules_pass_the_same_tests(tmp_path: Path) -> None:
    """Without the build the reader runs the .py files: their tests, on a copy without
    the extension modules (only needed when the compiled ones are what this run imports)."""
    if not native.built():
        if os.environ.get("PIPELINE_REQUIRE_NATIVE") == "1":
            pytest.fail("PIPELINE_REQUIRE_NATIVE=1 but scripts/build_native.py built nothing")
        pytest.skip("nothing compiled: this run already tests the pure-Python modules")
    shutil.copytree(
        ROOT / "replication",
        tmp_path / "replication",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "_native.json", "__pycache__"),
    )
    shutil.copytree(
        ROOT / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *PURE_TESTS],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # And it was the pure code: the copy has no extension modules to import.
    assert not list((tmp_path / "replication").glob("*.so"))
