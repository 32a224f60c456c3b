"""``OrganizationBootstrapWorkflow``: started → organization → DNS → invitations → emails →
outcome.

The first step records ``organization.bootstrap.workflow_started`` (under the starter's
idempotency key, so it is recorded once whoever comes first): it then precedes every event
of the workflow's own activities, and it exists even when the pipeline died between the
start and its own record of it (DESIGN.md invariant 9). The same step then validates the
request (``bootstrap.begin``, one local activity; workflows begun before it, without the
``BEGIN_PATCH`` marker, replay with the two steps it joined, ``record_started`` and
``prepare``).

Outcome contract: a *business* failure (a bad request, a provider that refuses, retries
exhausted) is compensated, recorded as ``organization.bootstrap.failed`` and
``workflow.queue.failed``, and returned as ``BootstrapResult(status="failed")``; the
Temporal execution itself completes. The events are the system's record of the outcome,
and a failed execution is kept for what they cannot say: the outcome could not be
recorded at all (the event store rejects the write), or a bug in this code.

Compensation runs in reverse order of the steps (revoke invitations, then remove the DNS
record); the organization itself is kept, marked failed by the failed event.

Every activity has a heartbeat timeout (pipeline/bootstrap/heartbeat.py): an attempt on a
worker that died is retried after seconds, not after its start-to-close timeout.

The event-store steps (record the start, validate, create the organization, invite each
admin, revoke the invitations, record the outcome) run as *local* activities: in the
worker that runs the workflow task, their results recorded as markers when the task
completes, without the three server round trips (schedule, dispatch, complete) of a
regular activity each. They are short writes, keyed like every other event, so a rerun
after a lost worker (the workflow task is retried from the history) adds nothing. The
provider calls (DNS, email), which may take long and must heartbeat, stay regular
activities. Workflows begun before this (no ``LOCAL_STORE_PATCH`` marker in their
history) replay and finish on the regular-activity path they started on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as StepTimeoutError

with workflow.unsafe.imports_passed_through():
    from pipeline.bootstrap.activities import BootstrapActivities
    from pipeline.bootstrap.heartbeat import HEARTBEAT_TIMEOUT
    from pipeline.bootstrap.inputs import (
        BeginInput,
        BootstrapInput,
        BootstrapResult,
        CompensationInput,
        DnsInput,
        EmailInput,
        Invitation,
        InviteInput,
        OrganizationInput,
        OutcomeInput,
        RetryTuning,
        StartedInput,
        StepInput,
    )
    from pipeline.bootstrap.retry import INVALID_INPUT
    from pipeline.events import WORKFLOW_TYPE_BOOTSTRAP, workflow_id_for

# The first activity runs before the worker's tuning is known; validation never fails
# for a transient reason, so a few quick attempts only cover a worker lost mid-call.
_PREPARE_TIMEOUT = timedelta(seconds=30)
_PREPARE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=5,
    non_retryable_error_types=[INVALID_INPUT],
)
# Recording the start retries until the event store takes it (like the outcome): every
# later event must follow it. Only a rejected write (non-retryable) ends it.
_STARTED_TIMEOUT = timedelta(seconds=30)
_STARTED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
)
# The first step on the local path since BEGIN_PATCH: record the start (retried until the
# store takes it, as above) and validate (a bad request fails once, not retried).
_BEGIN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=[INVALID_INPUT],
)
# Workflows started before this step existed replay without it (their starter records
# the start); see temporalio's workflow.patched.
RECORD_STARTED_PATCH = "record-workflow-started"
# Workflows started before the event-store steps became local activities replay with
# regular ones (see the module's docstring).
LOCAL_STORE_PATCH = "local-store-activities"
# Workflows begun before the start's record and the validation became one local activity
# (``bootstrap.begin``) replay with the two (``record_started``, then ``prepare``).
BEGIN_PATCH = "begin-in-one-step"
_MAX_REASON = 2000
_COMPENSATED_STAGES = {
    "dns": ("dns",),
    "invitations": ("invitations", "dns"),
    "email": ("invitations", "dns"),
}


ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")
_Step = Callable[[BootstrapActivities, ArgT], Awaitable[ResultT]]


def _policy(tuning: RetryTuning, maximum_attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=tuning.initial_interval_ms),
        backoff_coefficient=tuning.backoff_coefficient,
        maximum_interval=timedelta(milliseconds=tuning.maximum_interval_ms),
        maximum_attempts=maximum_attempts,
    )


# How a step's failure reaches the workflow: a regular activity's as ActivityError (the
# cause inside); a local activity's that will not be retried again also unwrapped, as the
# ApplicationError (or TimeoutError) itself.
StepFailure = (ActivityError, ApplicationError, StepTimeoutError)


def _reason(err: FailureError) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        reason = f"{cause.type}: {cause.message}" if cause.type else cause.message
    elif cause is not None:
        reason = f"{type(cause).__name__}: {cause}"
    else:
        reason = str(err)
    # The contract caps a reason at 2000 characters; a provider's error body can be longer.
    return reason[:_MAX_REASON] or "unknown failure"


@workflow.defn(name=WORKFLOW_TYPE_BOOTSTRAP)
class OrganizationBootstrapWorkflow:
    """Bootstraps one organization; the workflow id is ``org-bootstrap-{org_id}``."""

    def __init__(self) -> None:
        self._stage = "validation"
        self._local = False
        # Production defaults until the first activity returns the worker's tuning; they
        # matter only when that activity fails (the failure is then recorded with them).
        self._tune(RetryTuning())

    @workflow.query
    def stage(self) -> str:
        """The step running now (``validation`` ... ``completion``), for operators."""
        return self._stage

    def _tune(self, tuning: RetryTuning) -> None:
        self._timeout = timedelta(milliseconds=tuning.start_to_close_timeout_ms)
        self._store_retry = _policy(tuning, tuning.store_maximum_attempts)
        self._provider_retry = _policy(tuning, tuning.provider_maximum_attempts)
        # 0 = unlimited: the outcome is what the rest of the system waits for, and only
        # the event store can stop it from being written.
        self._outcome_retry = _policy(tuning, 0)

    async def _store_step(
        self,
        step: _Step[ArgT, ResultT],
        arg: ArgT,
        start_to_close: timedelta,
        retry: RetryPolicy,
    ) -> ResultT:
        """An event-store step: a local activity, or a regular one on the old path."""
        if self._local:
            return await workflow.execute_local_activity_method(
                step, arg, start_to_close_timeout=start_to_close, retry_policy=retry
            )
        return await workflow.execute_activity_method(
            step,
            arg,
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=retry,
        )

    @workflow.run
    async def run(self, request: BootstrapInput) -> BootstrapResult:
        """Run the bootstrap; returns its result whether it completed or failed."""
        step = StepInput(
            org_id=request.org_id,
            job_id=request.job_id,
            workflow_id=workflow_id_for(request.org_id),
        )
        fqdn: str | None = None
        invitations: list[Invitation] = []
        sent = 0
        self._local = workflow.patched(LOCAL_STORE_PATCH)
        try:
            started = (
                StartedInput(
                    step=step,
                    pending_event_id=request.pending_event_id,
                    claimed_event_id=request.claimed_event_id,
                )
                if request.pending_event_id
                else None
            )
            if self._local and workflow.patched(BEGIN_PATCH):
                plan = await self._store_step(
                    BootstrapActivities.begin,
                    BeginInput(request=request, started=started),
                    _STARTED_TIMEOUT,
                    _BEGIN_RETRY,
                )
            else:
                if started is not None and workflow.patched(RECORD_STARTED_PATCH):
                    await self._store_step(
                        BootstrapActivities.record_started,
                        started,
                        _STARTED_TIMEOUT,
                        _STARTED_RETRY,
                    )
                plan = await self._store_step(
                    BootstrapActivities.prepare, request, _PREPARE_TIMEOUT, _PREPARE_RETRY
                )
            self._tune(plan.tuning)
            fqdn = plan.fqdn
            self._stage = "organization"
            await self._store_step(
                BootstrapActivities.create_organization,
                OrganizationInput(step=step, name=request.name, subdomain=request.subdomain),
                self._timeout,
                self._store_retry,
            )
            self._stage = "dns"
            await workflow.execute_activity_method(
                BootstrapActivities.create_dns_record,
                DnsInput(step=step, subdomain=request.subdomain, fqdn=fqdn),
                start_to_close_timeout=self._timeout,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=self._provider_retry,
            )
            # Sequential on purpose: the events land in a stable order, and a permanent
            # failure leaves no sibling activity running while compensation starts.
            self._stage = "invitations"
            for admin in plan.admins:
                invitation = await self._store_step(
                    BootstrapActivities.invite_user,
                    InviteInput(step=step, admin=admin),
                    self._timeout,
                    self._store_retry,
                )
                invitations.append(invitation)
            self._stage = "email"
            for invitation in invitations:
                await workflow.execute_activity_method(
                    BootstrapActivities.send_invitation_email,
                    EmailInput(
                        step=step, organization_name=request.name, fqdn=fqdn, invitation=invitation
                    ),
                    start_to_close_timeout=self._timeout,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    retry_policy=self._provider_retry,
                )
                sent += 1
        except StepFailure as err:
            return await self._fail(step, fqdn, invitations, sent, err)
        self._stage = "completion"
        await self._record(OutcomeInput(step=step, status="completed"))
        workflow.logger.info("bootstrap completed workflow_id=%s", step.workflow_id)
        return BootstrapResult(
            org_id=step.org_id,
            workflow_id=step.workflow_id,
            status="completed",
            fqdn=fqdn,
            invitations=invitations,
            emails_sent=sent,
        )

    async def _fail(
        self,
        step: StepInput,
        fqdn: str | None,
        invitations: list[Invitation],
        sent: int,
        err: FailureError,
    ) -> BootstrapResult:
        stage = self._stage
        reason = _reason(err)
        workflow.logger.warning(
            "bootstrap failed workflow_id=%s stage=%s reason=%s", step.workflow_id, stage, reason
        )
        compensated: list[str] = []
        errors: list[str] = []
        undo = CompensationInput(step=step, fqdn=fqdn or "", reason=reason)
        self._stage = "compensation"
        for action in _COMPENSATED_STAGES.get(stage, ()):
            try:
                if action == "invitations":
                    revoked = await self._store_step(
                        BootstrapActivities.revoke_invitations,
                        undo,
                        self._timeout,
                        self._store_retry,
                    )
                    compensated.append(f"revoked {len(revoked)} invitation(s)")
                else:
                    record_id = await workflow.execute_activity_method(
                        BootstrapActivities.remove_dns_record,
                        undo,
                        start_to_close_timeout=self._timeout,
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        retry_policy=self._provider_retry,
                    )
                    compensated.append(
                        f"removed dns record {record_id}"
                        if record_id
                        else "no dns record to remove"
                    )
            except StepFailure as comp_err:
                # Keep undoing the rest: one stuck provider must not leave the others.
                errors.append(f"{action}: {_reason(comp_err)}")
        self._stage = "completion"
        await self._record(OutcomeInput(step=step, status="failed", stage=stage, reason=reason))
        return BootstrapResult(
            org_id=step.org_id,
            workflow_id=step.workflow_id,
            status="failed",
            fqdn=fqdn,
            invitations=invitations,
            emails_sent=sent,
            stage=stage,
            reason=reason,
            compensated=compensated,
            compensation_errors=errors,
        )

    async def _record(self, outcome: OutcomeInput) -> None:
        await self._store_step(
            BootstrapActivities.record_outcome, outcome, self._timeout, self._outcome_retry
        )
