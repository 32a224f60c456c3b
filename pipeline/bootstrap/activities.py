"""The bootstrap's activities: each step does its effect, then records it as an event.

Every event is appended on the organization's stream with the key
``{workflow_id}:{event_type}[:{per-item}]``, so a retried activity re-emits nothing. The
retry decision for every failure is taken in one place, :func:`pipeline.bootstrap.retry.classified`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pipeline import events as ev
from pipeline.bootstrap import store
from pipeline.bootstrap.inputs import (
    BeginInput,
    BootstrapInput,
    BootstrapPlan,
    CompensationInput,
    DnsInput,
    DnsRecordResult,
    EmailInput,
    Invitation,
    InviteInput,
    OrganizationInput,
    OutcomeInput,
    StartedInput,
    StepInput,
)
from pipeline.bootstrap.messages import render_invitation_email
from pipeline.bootstrap.pool import ConnectionPool
from pipeline.bootstrap.providers.dns import DnsProvider
from pipeline.bootstrap.providers.email import EmailProvider
from pipeline.bootstrap.retry import (
    INVITATION_KEY_CHANGED,
    classified,
    stored_text,
)
from pipeline.bootstrap.settings import BootstrapSettings
from pipeline.bootstrap.validation import validate_bootstrap
from pipeline.eventstore import NewEvent, idempotency_key
from pipeline.invitations import tokens

logger = logging.getLogger(__name__)

SOURCE = "org-bootstrap-worker"
MAX_KEY = 255


class BootstrapActivities:
    """The activities, bound to the worker's settings and providers."""

    def __init__(
        self,
        settings: BootstrapSettings,
        dns: DnsProvider,
        email: EmailProvider,
        pool: ConnectionPool | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool or ConnectionPool(settings.database_url.get_secret_value())
        self._dns = dns
        self._email = email

    def all(self) -> list[Callable[..., object]]:
        """The bound activity methods, for ``Worker(activities=...)``."""
        return [
            self.begin,
            self.record_started,
            self.prepare,
            self.create_organization,
            self.create_dns_record,
            self.invite_user,
            self.send_invitation_email,
            self.revoke_invitations,
            self.remove_dns_record,
            self.record_outcome,
        ]

    def _event(
        self, step: StepInput, event_type: str, data: Mapping[str, object], item: str = ""
    ) -> NewEvent:
        effect = f"{event_type}:{item}" if item else event_type
        if len(idempotency_key(step.workflow_id, effect)) > MAX_KEY:
            # The contract caps keys at 255 characters; only a very long email gets here.
            effect = f"{event_type}:sha256-{hashlib.sha256(item.encode()).hexdigest()}"
        info = activity.info()
        return NewEvent(
            stream_id=uuid.UUID(step.org_id),
            stream_type=ev.STREAM_TYPE_ORGANIZATION,
            event_type=event_type,
            event_data=data,
            idempotency_key=idempotency_key(step.workflow_id, effect),
            event_metadata={
                "causation_id": step.job_id,
                "source": SOURCE,
                "workflow_id": step.workflow_id,
                "run_id": info.workflow_run_id,
                "activity": info.activity_type,
            },
        )

    @activity.defn(name="bootstrap.begin")
    async def begin(self, request: BeginInput) -> BootstrapPlan:
        """The workflow's first step, in one local activity: record
        ``organization.bootstrap.workflow_started`` when the starter passed the job's queue
        events (as :meth:`record_started`), then validate the request and hand out the
        tuning (as :meth:`prepare`).

        One step instead of two saves the workflow's first task a local-activity round
        trip. The start is recorded before the request is checked, so it precedes the
        ``failed`` event of an invalid request too. A retry records nothing twice (the
        event is keyed) and validation fails the same way every time (not retried).
        """
        if request.started is not None:
            await self._record_started(request.started)
        return self._plan(request.request)

    @activity.defn(name="bootstrap.record_started")
    async def record_started(self, request: StartedInput) -> str:
        """Emit ``organization.bootstrap.workflow_started``; returns the event id.

        The workflow's first step, so the event precedes every event of its activities
        (DESIGN.md invariant 9) and exists even if the pipeline died right after the
        start. Keyed as the starter keys its own emission: the second of the two adds
        nothing and gets the first one's id. (Workflows begun since ``bootstrap.begin``
        record it there; this one serves the histories from before.)
        """
        return await self._record_started(request)

    async def _record_started(self, request: StartedInput) -> str:
        step = request.step
        info = activity.info()
        event = NewEvent(
            stream_id=uuid.UUID(step.org_id),
            stream_type=ev.STREAM_TYPE_ORGANIZATION,
            event_type=ev.BOOTSTRAP_WORKFLOW_STARTED,
            event_data={
                "job_id": step.job_id,
                "workflow_id": step.workflow_id,
                "run_id": info.workflow_run_id,
            },
            idempotency_key=ev.workflow_started_key(request.pending_event_id),
            event_metadata={
                "causation_id": request.claimed_event_id or request.pending_event_id,
                "source": SOURCE,
                "workflow_id": step.workflow_id,
                "run_id": info.workflow_run_id,
                "activity": info.activity_type,
            },
        )
        with classified():
            ids = await store.emit_events(self._pool, [event])
        logger.info(
            "workflow started recorded workflow_id=%s run_id=%s",
            step.workflow_id,
            info.workflow_run_id,
        )
        return str(ids[0])

    @activity.defn(name="bootstrap.prepare")
    async def prepare(self, request: BootstrapInput) -> BootstrapPlan:
        """Validate the request (a bad one fails once, not retried) and hand out the tuning.

        (Workflows begun since ``bootstrap.begin`` do this there.)
        """
        return self._plan(request)

    def _plan(self, request: BootstrapInput) -> BootstrapPlan:
        with classified():
            valid = validate_bootstrap(request, self._settings.base_domain)
        return BootstrapPlan(fqdn=valid.fqdn, admins=valid.admins, tuning=self._settings.retry)

    @activity.defn(name="bootstrap.create_organization")
    async def create_organization(self, request: OrganizationInput) -> str:
        """Emit ``organization.created``; returns the event id."""
        data = {"name": request.name, "subdomain": request.subdomain}
        with classified():
            ids = await store.emit_events(
                self._pool, [self._event(request.step, ev.ORGANIZATION_CREATED, data)]
            )
        logger.info("organization created workflow_id=%s", request.step.workflow_id)
        return str(ids[0])

    @activity.defn(name="bootstrap.create_dns_record")
    async def create_dns_record(self, request: DnsInput) -> DnsRecordResult:
        """Publish the record (idempotent by name), then emit ``organization.dns.created``."""
        s = self._settings
        with classified():
            record = await self._dns.create_record(
                request.fqdn, s.dns_record_type, s.dns_target, request.step.org_id
            )
            result = DnsRecordResult(
                fqdn=record.fqdn,
                record_id=record.record_id,
                record_type=record.record_type,
                content=record.content,
                provider=self._dns.name,
            )
            data = {
                "subdomain": request.subdomain,
                "fqdn": result.fqdn,
                "record_type": result.record_type,
                "content": result.content,
                "provider": result.provider,
                "record_id": result.record_id,
            }
            await store.emit_events(
                self._pool, [self._event(request.step, ev.DNS_RECORD_CREATED, data)]
            )
        logger.info(
            "dns record created workflow_id=%s fqdn=%s record_id=%s",
            request.step.workflow_id,
            result.fqdn,
            result.record_id,
        )
        return result

    @activity.defn(name="bootstrap.invite_user")
    async def invite_user(self, request: InviteInput) -> Invitation:
        """Emit ``user.invited`` with the hash of a derived token; a retry returns the first.

        The token itself is never recorded: it is an HMAC of the invitation's id and
        expiry, which the email step derives again (pipeline/invitations/tokens.py).
        """
        invitation_id = str(uuid.uuid4())
        expires_at = (datetime.now(UTC) + self._settings.invitation_ttl).isoformat()
        token = tokens.derive_token(
            self._settings.invitation_key.get_secret_value(), invitation_id, expires_at
        )
        data = {
            "invitation_id": invitation_id,
            "email": request.admin.email,
            "role": request.admin.role,
            "token_hash": tokens.token_hash(token),
            "expires_at": expires_at,
        }
        event = self._event(request.step, ev.USER_INVITED, data, request.admin.email.lower())
        with classified():
            stored = await store.emit_and_read(self._pool, event)
        return Invitation(
            invitation_id=stored_text(stored, "invitation_id"),
            email=stored_text(stored, "email"),
            role=stored_text(stored, "role"),
            token_hash=stored_text(stored, "token_hash"),
            expires_at=stored_text(stored, "expires_at"),
        )

    def _token(self, inv: Invitation) -> str:
        """The invitation's token, derived again; refused if the key changed since."""
        token = tokens.derive_token(
            self._settings.invitation_key.get_secret_value(), inv.invitation_id, inv.expires_at
        )
        if not tokens.matches(token, inv.token_hash):
            raise ApplicationError(
                f"invitation {inv.invitation_id}: PIPELINE_INVITATION_KEY is not the key it was "
                "issued with, so its emailed link could not be accepted",
                type=INVITATION_KEY_CHANGED,
                non_retryable=True,
            )
        return token

    @activity.defn(name="bootstrap.send_invitation_email")
    async def send_invitation_email(self, request: EmailInput) -> bool:
        """Send the invitation unless already recorded as sent; returns whether it sent now.

        A crash between the send and the event makes the retry send again (email has no
        transaction to share); the stable Message-ID lets the receiving side collapse it.
        """
        inv = request.invitation
        event = self._event(
            request.step,
            ev.INVITATION_EMAIL_SENT,
            {"invitation_id": inv.invitation_id, "email": inv.email},
            inv.invitation_id,
        )
        with classified():
            if await store.find_by_key(self._pool, event.idempotency_key) is not None:
                return False
            token = self._token(inv)
            message = render_invitation_email(
                organization_name=request.organization_name,
                fqdn=request.fqdn,
                invitation=inv,
                token=token,
                accept_url=self._settings.accept_url(request.fqdn, token),
            )
            await self._email.send(message)
            await store.emit_events(self._pool, [event])
        logger.info(
            "invitation sent workflow_id=%s invitation_id=%s provider=%s",
            request.step.workflow_id,
            inv.invitation_id,
            self._email.name,
        )
        return True

    @activity.defn(name="bootstrap.revoke_invitations")
    async def revoke_invitations(self, request: CompensationInput) -> list[str]:
        """Compensation: emit ``invitation.revoked`` for every invitation of this bootstrap.

        The invitations are read from the event store, not from the workflow, so one whose
        activity failed after its event was written is revoked too.
        """
        prefix = idempotency_key(request.step.workflow_id, f"{ev.USER_INVITED}:")
        with classified():
            invited = await store.find_by_key_prefix(self._pool, request.step.org_id, prefix)
            ids = [stored_text(data, "invitation_id") for data in invited]
            revocations = [
                self._event(
                    request.step,
                    ev.INVITATION_REVOKED,
                    {"invitation_id": inv_id, "reason": request.reason},
                    inv_id,
                )
                for inv_id in ids
            ]
            await store.emit_events(self._pool, revocations)
        logger.info(
            "invitations revoked workflow_id=%s count=%d", request.step.workflow_id, len(ids)
        )
        return ids

    @activity.defn(name="bootstrap.remove_dns_record")
    async def remove_dns_record(self, request: CompensationInput) -> str | None:
        """Compensation: delete this organization's record; emit ``organization.dns.removed``.

        Returns the removed record's id, or None when there was nothing to remove (the
        create failed before publishing anything), in which case no event is emitted.
        """
        step = request.step
        with classified():
            record_id = await self._dns.delete_record(request.fqdn, step.org_id)
            if record_id is None:
                # An earlier attempt may have deleted it and failed before emitting.
                created_key = idempotency_key(step.workflow_id, ev.DNS_RECORD_CREATED)
                created = await store.find_by_key(self._pool, created_key)
                record_id = None if created is None else stored_text(created, "record_id")
            if record_id is None:
                return None
            data = {"fqdn": request.fqdn, "record_id": record_id, "reason": request.reason}
            await store.emit_events(self._pool, [self._event(step, ev.DNS_RECORD_REMOVED, data)])
        logger.info("dns record removed workflow_id=%s fqdn=%s", step.workflow_id, request.fqdn)
        return record_id

    @activity.defn(name="bootstrap.record_outcome")
    async def record_outcome(self, request: OutcomeInput) -> None:
        """Emit the bootstrap's outcome and the queue job's, in one transaction."""
        step = request.step
        if request.status == "completed":
            pair = [
                self._event(step, ev.BOOTSTRAP_COMPLETED, {"workflow_id": step.workflow_id}),
                self._event(
                    step,
                    ev.QUEUE_COMPLETED,
                    {"job_id": step.job_id, "workflow_id": step.workflow_id},
                ),
            ]
        else:
            reason = request.reason or "unknown"
            pair = [
                self._event(
                    step,
                    ev.BOOTSTRAP_FAILED,
                    {"workflow_id": step.workflow_id, "stage": request.stage, "reason": reason},
                ),
                self._event(
                    step,
                    ev.QUEUE_FAILED,
                    {"job_id": step.job_id, "workflow_id": step.workflow_id, "error": reason},
                ),
            ]
        with classified():
            await store.emit_events(self._pool, pair)
        logger.info("bootstrap %s workflow_id=%s", request.status, step.workflow_id)
