"""A stand-in for the real OrganizationBootstrapWorkflow (written elsewhere), registered
under the same name; in a module of its own so Temporal's sandbox imports nothing else."""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn(name="OrganizationBootstrapWorkflow")
class StandInBootstrapWorkflow:
    # Any, not object: Temporal's converter cannot decode into `object`.
    @workflow.run
    async def run(self, payload: dict[str, Any]) -> str:
        # Echo the job id: the test reads it back to check the input the starter sent.
        return str(payload.get("job_id"))
