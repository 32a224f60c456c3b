"""The invitation email: pure rendering, so its content is testable without a server."""

from __future__ import annotations

from pipeline.bootstrap.inputs import Invitation
from pipeline.bootstrap.providers.email import OutgoingEmail


def render_invitation_email(
    *, organization_name: str, fqdn: str, invitation: Invitation, token: str, accept_url: str
) -> OutgoingEmail:
    """The message inviting ``invitation.email`` to ``organization_name``.

    The body carries both the accept link and the bare token, so the invitation can be
    accepted even when a mail client mangles the link. The email is the only place the
    token is written.
    """
    body = (
        f"Hello,\n\n"
        f"You have been invited to administer {organization_name} ({fqdn}) "
        f"with the role '{invitation.role}'.\n\n"
        f"Accept the invitation: {accept_url}\n\n"
        f"Or enter this invitation token: {token}\n\n"
        f"The invitation expires at {invitation.expires_at}.\n"
    )
    return OutgoingEmail(
        to=invitation.email,
        subject=f"You are invited to {organization_name}",
        body=body,
        message_id=f"<invitation-{invitation.invitation_id}@{fqdn}>",
    )
