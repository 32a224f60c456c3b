"""Dataclasses crossing the workflow/activity boundary (Temporal's JSON data converter).

Only JSON-friendly field types here (str, int, float, bool, lists, nested dataclasses):
times travel as RFC 3339 strings and durations as milliseconds, so every value recorded
in the workflow history reads back exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Admin:
    """One administrator to invite."""

    email: str
    role: str


@dataclass(frozen=True, slots=True)
class BootstrapInput:
    """What the starter passes to the workflow, taken from ``organization.bootstrap.initiated``.

    ``job_id`` is that event's id (the queue job's id); ``org_id`` its stream_id.
    ``pending_event_id`` and ``claimed_event_id`` are the ids of the job's
    ``workflow.queue.pending`` and ``workflow.queue.claimed`` events: the workflow's first
    step records ``workflow_started`` under the key the starter uses (empty when a starter
    of an earlier version started the workflow; that starter records it itself).
    """

    org_id: str
    job_id: str
    name: str
    subdomain: str
    admins: list[Admin]
    pending_event_id: str = ""
    claimed_event_id: str = ""


@dataclass(frozen=True, slots=True)
class RetryTuning:
    """Retry and timeout knobs, owned by the worker's settings (tests shorten them).

    ``provider_maximum_attempts`` bounds the calls to DNS and email providers, after which
    the bootstrap is compensated; ``store_maximum_attempts`` bounds the event-store steps.
    """

    initial_interval_ms: int = 1_000
    backoff_coefficient: float = 2.0
    maximum_interval_ms: int = 60_000
    provider_maximum_attempts: int = 8
    store_maximum_attempts: int = 20
    start_to_close_timeout_ms: int = 30_000


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    """The validated request plus the worker's tuning, returned by the first activity.

    Reading the tuning through an activity records it in the history, so a replay on a
    worker configured differently still takes the same decisions.
    """

    fqdn: str
    admins: list[Admin]
    tuning: RetryTuning = field(default_factory=RetryTuning)


@dataclass(frozen=True, slots=True)
class StepInput:
    """The identifiers every step needs to key its events."""

    org_id: str
    job_id: str
    workflow_id: str


@dataclass(frozen=True, slots=True)
class StartedInput:
    """Input of the ``workflow_started`` step: the job's pending and claimed events."""

    step: StepInput
    pending_event_id: str
    claimed_event_id: str


@dataclass(frozen=True, slots=True)
class BeginInput:
    """Input of the workflow's first step (``bootstrap.begin``): the request to validate,
    and the job's queue events when the starter passed them (``workflow_started`` is then
    recorded first)."""

    request: BootstrapInput
    started: StartedInput | None = None


@dataclass(frozen=True, slots=True)
class OrganizationInput:
    """Input of the ``organization.created`` step."""

    step: StepInput
    name: str
    subdomain: str


@dataclass(frozen=True, slots=True)
class DnsInput:
    """Input of the DNS step: the record ``fqdn`` for ``subdomain``."""

    step: StepInput
    subdomain: str
    fqdn: str


@dataclass(frozen=True, slots=True)
class DnsRecordResult:
    """The DNS record as published by the provider."""

    fqdn: str
    record_id: str
    record_type: str
    content: str
    provider: str


@dataclass(frozen=True, slots=True)
class InviteInput:
    """Input of the invitation step for one admin."""

    step: StepInput
    admin: Admin


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation as recorded in its ``user.invited`` event.

    Only the token's hash crosses into Temporal's history; the email step derives the
    token itself (pipeline/invitations/tokens.py).
    """

    invitation_id: str
    email: str
    role: str
    token_hash: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class EmailInput:
    """Input of the email step for one invitation."""

    step: StepInput
    organization_name: str
    fqdn: str
    invitation: Invitation


@dataclass(frozen=True, slots=True)
class CompensationInput:
    """Input of a compensation step: what to undo, and why."""

    step: StepInput
    fqdn: str
    reason: str


@dataclass(frozen=True, slots=True)
class OutcomeInput:
    """Input of the last step: ``status`` is ``completed`` or ``failed``."""

    step: StepInput
    status: str
    stage: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What the workflow returns. A business failure is a result, not a failed execution.

    ``status`` is ``completed`` or ``failed``; on failure ``stage`` and ``reason`` say
    where and why, ``compensated`` lists the undo steps that ran and
    ``compensation_errors`` those that could not.
    """

    org_id: str
    workflow_id: str
    status: str
    fqdn: str | None = None
    invitations: list[Invitation] = field(default_factory=list)
    emails_sent: int = 0
    stage: str | None = None
    reason: str | None = None
    compensated: list[str] = field(default_factory=list)
    compensation_errors: list[str] = field(default_factory=list)
