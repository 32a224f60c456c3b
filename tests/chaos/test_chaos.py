"""The chaos harness's short run (issue 14), part of `make test`.

300 bootstraps through both `api.emit_domain_event` signatures while each kind of fault
strikes once: SIGKILL of `pipeline run` and of `pipeline worker`, SIGKILL + restart of the
Kafka broker, `pg_ctl restart -m immediate`, 30 s without Temporal, a frozen slot holder.
The harness (bench/chaos.py) runs against the REAL local services it brings up itself:
when one cannot start it exits 2 and this test fails, it never skips. It exits 1 on any
lost or duplicated effect, out-of-order chain, duplicate Kafka record or stuck job.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos_plan import FAULT_KINDS

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SHORT_RUN = [
    "--seed", "14",
    "--bootstraps", "300",
    "--rate", "2",
    "--faults", "6",
    "--replicas", "1",
    "--label", "short",
    # Never on speed: jobs count as stuck once no event came for 120 s; the cap only
    # bounds a run on a machine far slower than this one.
    "--stall-timeout", "120",
    "--settle-max", "1500",
]  # fmt: skip


@pytest.mark.timeout(2400)
def test_short_chaos_run_loses_duplicates_and_reorders_nothing(tmp_path: Path) -> None:
    report = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.chaos", *SHORT_RUN, "--report", str(report)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=2300,
        check=False,
    )
    output = f"{result.stdout[-8000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    text = report.read_text()
    assert all(f"| {kind} |" in text for kind in FAULT_KINDS), text
    assert "PASS" in text, text
