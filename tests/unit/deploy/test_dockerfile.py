"""Issue 15 item 9: the image is reproducible and small to build, and checks its health."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))


def test_every_base_image_is_pinned_by_digest() -> None:
    args = _args()
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert bases
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{base} -> {image} is not pinned"


def test_the_image_installs_the_lock_file_then_the_project_without_resolving() -> None:
    assert "pip install --no-cache-dir -r requirements/runtime.lock" in DOCKERFILE
    installs = re.findall(r"pip install [^&\n]*\.(?:\s|$)", DOCKERFILE)
    assert installs and all("--no-deps" in line for line in installs), installs


def test_healthcheck_and_port_follow_pipeline_web_port() -> None:
    assert re.search(r"^HEALTHCHECK .*", DOCKERFILE, re.M)
    assert "os.environ.get('PIPELINE_WEB_PORT', '6066')" in DOCKERFILE
    assert re.search(r"^EXPOSE 6066$", DOCKERFILE, re.M)


def test_dockerignore_keeps_the_heavy_local_folders_out_of_the_context() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".cache", "contracts/node_modules"} <= ignored
    for needed in ("requirements", "pipeline", "replication", "sql", "contracts"):
        assert needed not in ignored


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match[1].lower().replace("_", "-")] = match[2]
    return pins


def test_the_lock_files_pin_every_dependency_within_pyproject_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(ROOT / "requirements" / "runtime.lock")
    dev = _pins(ROOT / "requirements" / "dev.lock")
    for spec, lock in [(d, runtime) for d in project["dependencies"]] + [
        (d, dev) for d in [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    ]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not in the lock file"
        assert req.specifier.contains(lock[name], prereleases=True), (spec, lock[name])


def test_libraries_whose_private_apis_we_use_have_upper_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        if req.name in {"faust-streaming", "temporalio", "aiokafka"}:
            assert any(s.operator in {"<", "<=", "=="} for s in req.specifier), spec
