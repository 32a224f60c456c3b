"""The event types this system emits and consumes, and the shape of their ``event_data``.

Every event of one organization bootstrap carries the organization's id as ``stream_id``
and ``stream_type = "organization"`` (DESIGN.md invariant 4), so one agent sees the whole
chain in commit order. The AsyncAPI contract in ``contracts/`` is the authoritative,
machine-checked description; this module is the list the code uses.

event_data by type (all ids are UUID strings, times RFC 3339):

- organization.bootstrap.initiated  {name, subdomain, admins: [{email, role}]}
- workflow.queue.pending            {job_id, workflow_type, workflow_id, source_event_id, input}
- workflow.queue.claimed            {job_id, workflow_id, worker_id}
- organization.bootstrap.workflow_started {job_id, workflow_id, run_id}
- organization.created              {name, subdomain}
- organization.dns.created          {subdomain, fqdn, record_type, content, provider, record_id}
- organization.dns.removed          {fqdn, record_id, reason}
- user.invited                      {invitation_id, email, role, token_hash, expires_at}
- invitation.email.sent             {invitation_id, email}
- invitation.revoked                {invitation_id, reason}
- invitation.accepted               {invitation_id, email, role}
- organization.bootstrap.completed  {workflow_id}
- organization.bootstrap.failed     {workflow_id, stage, reason}
- workflow.queue.completed          {job_id, workflow_id}
- workflow.queue.failed             {job_id, workflow_id, error}

``job_id`` is the id of the ``organization.bootstrap.initiated`` event that asked for the
job; ``workflow_id`` is always ``org-bootstrap-{org_id}`` (never random).

event_metadata carries ``causation_id`` (the id of the event that caused this one, when a
component of the pipeline emitted it) and ``source`` (who emitted it).
"""

from __future__ import annotations

from typing import Final

STREAM_TYPE_ORGANIZATION: Final = "organization"
WORKFLOW_TYPE_BOOTSTRAP: Final = "OrganizationBootstrapWorkflow"

BOOTSTRAP_INITIATED: Final = "organization.bootstrap.initiated"
QUEUE_PENDING: Final = "workflow.queue.pending"
QUEUE_CLAIMED: Final = "workflow.queue.claimed"
BOOTSTRAP_WORKFLOW_STARTED: Final = "organization.bootstrap.workflow_started"
ORGANIZATION_CREATED: Final = "organization.created"
DNS_RECORD_CREATED: Final = "organization.dns.created"
DNS_RECORD_REMOVED: Final = "organization.dns.removed"
USER_INVITED: Final = "user.invited"
INVITATION_EMAIL_SENT: Final = "invitation.email.sent"
INVITATION_REVOKED: Final = "invitation.revoked"
INVITATION_ACCEPTED: Final = "invitation.accepted"
BOOTSTRAP_COMPLETED: Final = "organization.bootstrap.completed"
BOOTSTRAP_FAILED: Final = "organization.bootstrap.failed"
QUEUE_COMPLETED: Final = "workflow.queue.completed"
QUEUE_FAILED: Final = "workflow.queue.failed"

ALL_EVENT_TYPES: Final = frozenset(
    {
        BOOTSTRAP_INITIATED,
        QUEUE_PENDING,
        QUEUE_CLAIMED,
        BOOTSTRAP_WORKFLOW_STARTED,
        ORGANIZATION_CREATED,
        DNS_RECORD_CREATED,
        DNS_RECORD_REMOVED,
        USER_INVITED,
        INVITATION_EMAIL_SENT,
        INVITATION_REVOKED,
        INVITATION_ACCEPTED,
        BOOTSTRAP_COMPLETED,
        BOOTSTRAP_FAILED,
        QUEUE_COMPLETED,
        QUEUE_FAILED,
    }
)


def workflow_id_for(org_id: str) -> str:
    """The deterministic Temporal workflow id of an organization's bootstrap."""
    return f"org-bootstrap-{org_id}"


def workflow_started_key(pending_event_id: object) -> str:
    """The idempotency key of a job's ``workflow_started``: caused by its pending event.

    Both emitters use it, the workflow's first activity and the starter after the start
    returned, so whichever comes second adds nothing (the unique index on the key).
    """
    return f"{pending_event_id}:{BOOTSTRAP_WORKFLOW_STARTED}"
