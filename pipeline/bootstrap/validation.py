"""Pure validation of a bootstrap request: a bad request fails once, never retried.

Everything here is deterministic and free of I/O, so the same checks back the first
activity (where a failure becomes a non-retryable ``ApplicationError``) and the unit tests.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from pipeline.bootstrap.errors import InvalidBootstrapInput
from pipeline.bootstrap.inputs import Admin, BootstrapInput

# RFC 1035 label, restricted to lowercase: the subdomain is also a key in projections and
# in the provider, and two spellings of one DNS name must not become two organizations.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# The dot-atom local part of RFC 5322; quoted local parts are legal but no real admin
# address needs them, and they are a classic source of header injection.
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Roles and limits follow the event contract (contracts/organization-bootstrap-events.yaml),
# so a request that passes here yields events that pass the contract.
_ROLE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_FQDN = 253
_MAX_EMAIL = 254
_MAX_NAME = 255
_MAX_ADMINS = 100


@dataclass(frozen=True, slots=True)
class ValidatedBootstrap:
    """A request that passed every check, with its derived DNS name."""

    fqdn: str
    admins: list[Admin]


def validate_subdomain(subdomain: str, base_domain: str) -> str:
    """Return ``{subdomain}.{base_domain}``, or raise when the label is not a DNS label."""
    if not _LABEL_RE.fullmatch(subdomain):
        raise InvalidBootstrapInput(
            "subdomain",
            f"{subdomain!r} is not a valid DNS label: use 1-63 lowercase letters, digits "
            "and hyphens, not starting or ending with a hyphen",
        )
    fqdn = f"{subdomain}.{base_domain.lower()}"
    if len(fqdn) > _MAX_FQDN:
        raise InvalidBootstrapInput("subdomain", f"{fqdn!r} is longer than {_MAX_FQDN} characters")
    return fqdn


def validate_hostname(hostname: str) -> str:
    """Return ``hostname`` when it is a dotted DNS name (used for the base domain)."""
    labels = hostname.split(".")
    if len(hostname) > _MAX_FQDN or not all(_HOST_LABEL_RE.fullmatch(x) for x in labels):
        raise ValueError(f"{hostname!r} is not a valid DNS name")
    return hostname


def validate_email(email: str, field: str = "email") -> str:
    """Return ``email`` stripped of surrounding blanks, or raise when it is malformed."""
    value = email.strip()
    local, at, domain = value.rpartition("@")
    problem = None
    if not at or not local or not domain:
        problem = "must look like name@example.org"
    elif len(value) > _MAX_EMAIL or len(local) > 64:
        problem = f"is longer than {_MAX_EMAIL} characters (or its local part than 64)"
    elif not _LOCAL_RE.fullmatch(local):
        problem = "has a local part with characters that are not allowed"
    elif "." not in domain or not all(_HOST_LABEL_RE.fullmatch(x) for x in domain.split(".")):
        problem = "has a domain that is not a valid DNS name"
    if problem is not None:
        raise InvalidBootstrapInput(field, f"{email!r} {problem}")
    return value


def _validate_uuid(value: str, field: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError as exc:
        raise InvalidBootstrapInput(field, f"{value!r} is not a UUID") from exc


def validate_bootstrap(request: BootstrapInput, base_domain: str) -> ValidatedBootstrap:
    """Check a whole request; the first problem found is raised with its field name."""
    _validate_uuid(request.org_id, "org_id")
    _validate_uuid(request.job_id, "job_id")
    name = request.name.strip()
    if not name or len(name) > _MAX_NAME:
        raise InvalidBootstrapInput("name", f"must be 1-{_MAX_NAME} characters")
    fqdn = validate_subdomain(request.subdomain, base_domain)
    if not request.admins:
        raise InvalidBootstrapInput("admins", "at least one administrator is required")
    if len(request.admins) > _MAX_ADMINS:
        raise InvalidBootstrapInput("admins", f"at most {_MAX_ADMINS} administrators")
    admins: list[Admin] = []
    seen: set[str] = set()
    for i, admin in enumerate(request.admins):
        email = validate_email(admin.email, f"admins[{i}].email")
        # Each admin's events are keyed by address, so a repeated one would silently
        # collapse into a single invitation: reject it instead.
        if email.lower() in seen:
            raise InvalidBootstrapInput(f"admins[{i}].email", f"{email!r} is listed twice")
        seen.add(email.lower())
        if not _ROLE_RE.fullmatch(admin.role):
            raise InvalidBootstrapInput(
                f"admins[{i}].role",
                f"{admin.role!r} must be a lowercase snake_case name of at most 64 characters",
            )
        admins.append(Admin(email=email, role=admin.role))
    return ValidatedBootstrap(fqdn=fqdn, admins=admins)
