"""The new-organization form: parsed and checked against the contract, all pure.

Each field is checked on its own (put into the contract's example event in place of the
example's value), so every wrong field gets its message at once, not only the first one
the schema meets; then the whole event is checked. Nothing here writes.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pipeline import events as ev
from pipeline.contract import Contract, ContractViolation
from pipeline.eventstore import NewEvent

ADMIN_ROWS: Final = 3
DEFAULT_ROLE: Final = "organization_admin"
SOURCE: Final = "pipeline-console"
# What a `pattern` rule of the contract means, said to a person.
HINTS: Final = {
    "subdomain": "use lower-case letters, digits and hyphens (1-63), not starting or ending "
    "with a hyphen, e.g. acme-health",
    "email": "not an email address",
    "role": "use lower-case letters, digits and underscores, starting with a letter",
}
_ADMIN_PATH = re.compile(r"^event_data\.admins\[(\d+)\]\.(email|role)")


@dataclass(frozen=True, slots=True)
class Admin:
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class NewOrganization:
    """What the form holds; ``org_id`` is chosen when the form is shown, so a form sent
    twice emits once (the idempotency key is made of it)."""

    org_id: uuid.UUID
    name: str = ""
    subdomain: str = ""
    admins: tuple[Admin, ...] = ()

    def event(self) -> NewEvent:
        return NewEvent(
            stream_id=self.org_id,
            stream_type=ev.STREAM_TYPE_ORGANIZATION,
            event_type=ev.BOOTSTRAP_INITIATED,
            event_data=self.data(),
            event_metadata={"source": SOURCE, "correlation_id": f"console:{self.org_id}"},
            idempotency_key=f"console:{self.org_id}:{ev.BOOTSTRAP_INITIATED}",
        )

    def data(self) -> dict[str, object]:
        return {
            "name": self.name,
            "subdomain": self.subdomain,
            "admins": [{"email": a.email, "role": a.role} for a in self.admins],
        }

    def rows(self) -> list[Admin]:
        """The admin rows to show: the filled ones, then empty ones up to ADMIN_ROWS."""
        rows = list(self.admins)
        while len(rows) < ADMIN_ROWS:
            rows.append(Admin("", DEFAULT_ROLE if not rows else ""))
        return rows


@dataclass(slots=True)
class Errors:
    """Messages by field: ``name``, ``subdomain``, ``admins``, ``admin_email_<i>``,
    ``admin_role_<i>``, ``form`` (anything else)."""

    by_field: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, message)

    def __bool__(self) -> bool:
        return bool(self.by_field)


def parse(form: Mapping[str, str], emails: Sequence[str], roles: Sequence[str]) -> NewOrganization:
    """The form's values (``emails``/``roles``: the repeated admin fields, in order);
    a row with neither email nor role is left out."""
    try:
        org_id = uuid.UUID(form.get("org_id", ""))
    except ValueError:
        org_id = uuid.uuid4()
    admins = tuple(
        Admin(email.strip(), (role.strip() or DEFAULT_ROLE))
        for email, role in zip(emails, list(roles) + [""] * len(emails), strict=False)
        if email.strip() or role.strip()
    )
    return NewOrganization(
        org_id=org_id,
        name=form.get("name", "").strip(),
        subdomain=form.get("subdomain", "").strip(),
        admins=admins,
    )


def _row(contract: Contract, event: NewEvent, data: dict[str, object]) -> dict[str, object]:
    row: dict[str, object] = dict(contract.examples(event.event_type)[0].payload)
    row.update(
        stream_id=str(event.stream_id),
        stream_type=event.stream_type,
        event_type=event.event_type,
        event_data=data,
        event_metadata=dict(event.event_metadata),
        idempotency_key=event.idempotency_key,
    )
    return row


def field_of(path: str, admin_index: int | None = None) -> str:
    """The form field a contract path names (``event_data.admins[0].email`` ->
    ``admin_email_0``); ``admin_index`` maps a one-admin check back to its row."""
    match = _ADMIN_PATH.match(path)
    if match:
        index = admin_index if admin_index is not None else int(match[1])
        return f"admin_{match[2]}_{index}"
    for name in ("name", "subdomain", "admins"):
        if path == f"event_data.{name}" or path.startswith(f"event_data.{name}["):
            return name
    return "form"


def _check(
    contract: Contract,
    event: NewEvent,
    data: dict[str, object],
    errors: Errors,
    admin_index: int | None = None,
) -> None:
    try:
        contract.validate_event(_row(contract, event, data))
    except ContractViolation as exc:
        name = field_of(exc.path, admin_index)
        hint = HINTS.get(name.split("_")[1] if name.startswith("admin_") else name)
        message = exc.message
        if hint is not None and message.startswith("must match pattern"):
            message = f"{hint} (the contract: {message})"
        errors.add(name, message)


def validate(org: NewOrganization, contract: Contract) -> Errors:
    """Every field the contract would reject, with its message; empty when it may be sent."""
    errors = Errors()
    event = org.event()
    example = dict(contract.examples(event.event_type)[0].payload)
    raw = example.get("event_data")
    base: dict[str, object] = dict(raw) if isinstance(raw, dict) else {}
    for name in ("name", "subdomain"):
        data = copy.deepcopy(base)
        data[name] = getattr(org, name)
        _check(contract, event, data, errors)
    admins = base.get("admins")
    sample = admins[0] if isinstance(admins, list) and admins else {}
    for index, admin in enumerate(org.admins):
        for key in ("email", "role"):
            data = copy.deepcopy(base)
            data["admins"] = [{**sample, key: getattr(admin, key)}]
            _check(contract, event, data, errors, admin_index=index)
    if not org.admins:
        errors.add("admins", "at least one administrator is needed")
    if not errors:
        _check(contract, event, org.data(), errors)
    return errors
