"""A stand-in for the real OrganizationBootstrapWorkflow, registered under the same name
and taking the same parameter type; in a module of its own so Temporal's sandbox imports
nothing else (inputs.py imports only dataclasses)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pipeline.bootstrap.inputs import BootstrapInput


@workflow.defn(name="OrganizationBootstrapWorkflow")
class StandInBootstrapWorkflow:
    # BootstrapInput, as the real workflow: a start argument Temporal's converter cannot
    # read into it fails the workflow task, so every test that waits for this result
    # checks that the starter's input decodes.
    @workflow.run
    async def run(self, request: BootstrapInput) -> str:
        # Echo the job id: the test reads it back to check the input the starter sent.
        return request.job_id
