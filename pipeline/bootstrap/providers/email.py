"""Email providers: how an invitation reaches its admin.

Each invitation's message carries a ``Message-ID`` derived from the invitation, so a
message sent again after a crash (between the send and the ``invitation.email.sent``
event) is recognisable as the same message by the receiving side and overwrites the same
file in the local outbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from pipeline.bootstrap.errors import EmailProviderError

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A plain-text message to one recipient."""

    to: str
    subject: str
    body: str
    message_id: str


class EmailProvider(Protocol):
    """Sends one message."""

    @property
    def name(self) -> str:
        """Short provider name, for logs."""
        ...

    async def send(self, message: OutgoingEmail) -> None:
        """Deliver ``message``; raise :class:`EmailProviderError` with a retry verdict."""
        ...


def to_mime(message: OutgoingEmail, sender: str) -> EmailMessage:
    """The RFC 5322 form of ``message``."""
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Message-ID"] = message.message_id
    mime["Date"] = formatdate(usegmt=True)
    mime.set_content(message.body)
    return mime


def _permanent(code: int) -> bool:
    # SMTP reply classes: 4xx is "try again later", 5xx is "do not send this again".
    return code >= 500


class SmtpEmailProvider:
    """Any SMTP server, through the standard library in a worker thread."""

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._starttls = starttls
        self._username = username
        self._password = password
        self._timeout_s = timeout_s

    async def send(self, message: OutgoingEmail) -> None:
        """Send through the server; classify the failure when it refuses or is away."""
        try:
            await asyncio.to_thread(self._send_blocking, to_mime(message, self._sender))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            retryable = not all(_permanent(code) for code in codes)
            raise EmailProviderError(
                f"smtp {self._host}:{self._port} refused {message.to}: {exc.recipients}",
                retryable=retryable,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise EmailProviderError(
                f"smtp {self._host}:{self._port}: {exc} (check PIPELINE_SMTP_STARTTLS)",
                retryable=False,
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise EmailProviderError(
                f"smtp {self._host}:{self._port}: {exc.smtp_code} {exc.smtp_error!r}",
                retryable=not _permanent(exc.smtp_code),
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise EmailProviderError(
                f"smtp {self._host}:{self._port}: certificate rejected: {exc}", retryable=False
            ) from exc
        except OSError as exc:
            # Refused connections, timeouts and disconnects (SMTPServerDisconnected is an
            # OSError too): the server may be back on the next attempt.
            raise EmailProviderError(
                f"smtp {self._host}:{self._port} unavailable: {exc!r}", retryable=True
            ) from exc

    def _send_blocking(self, mime: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username is not None and self._password is not None:
                smtp.login(self._username, self._password)
            smtp.send_message(mime)


class LocalEmailProvider:
    """Writes each message as an ``.eml`` file into a folder (development, demos)."""

    name = "local"

    def __init__(self, outbox_dir: Path, sender: str) -> None:
        self._outbox = outbox_dir
        self._sender = sender

    def path_for(self, message: OutgoingEmail) -> Path:
        """Where ``message`` is written: one file per Message-ID."""
        stem = _UNSAFE_FILENAME.sub("_", message.message_id.strip("<>"))
        return self._outbox / f"{stem}.eml"

    async def send(self, message: OutgoingEmail) -> None:
        """Write the message atomically (a reader never sees half a file)."""
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise EmailProviderError(f"outbox {self._outbox}: {exc}", retryable=True) from exc

    def _write(self, message: OutgoingEmail) -> None:
        self._outbox.mkdir(parents=True, exist_ok=True)
        data = to_mime(message, self._sender).as_bytes()
        fd, tmp = tempfile.mkstemp(dir=self._outbox, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path_for(message))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
