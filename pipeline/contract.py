"""The event contract: the AsyncAPI document in ``contracts/``, loaded once, enforced per event.

``contracts/organization-bootstrap-events.yaml`` describes every event on the
``domain-events`` topic: one message per event type, each with a JSON Schema for the whole
``domain_events`` row. :mod:`pipeline.contract_loader` reads that document and resolves
its local ``$ref``s; this module, the validator, compiles one fastjsonschema validator
per event type, so checking an event costs one dict
lookup and one call to generated Python code. In front of it, for the types whose schema
it covers, runs a quicker predicate that only says "certainly valid"
(:mod:`pipeline.contract_fastpath`); anything it does not vouch for goes to
fastjsonschema, whose verdict and message count.

A row that breaks the contract raises :class:`ContractViolation`, which names the event
type, the JSON path of the offending value (``event_data.admins[0].email``) and what is
wrong with it; the consumer sends such an event to the dead-letter topic with that reason
(docs/design.md, invariant 7).

The document is found at ``$PIPELINE_CONTRACT_PATH`` when that is set, otherwise next to
the package in the repository (``contracts/`` beside ``pipeline/``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Final, TypeAlias

import fastjsonschema

from pipeline.contract_fastpath import Predicate, certainly_valid
from pipeline.contract_loader import (
    CONTRACT_PATH_ENV,
    DEFAULT_CONTRACT_PATH,
    ContractDocument,
    ContractError,
    ContractLoadError,
    JsonObject,
    JsonValue,
    MessageExample,
    MessageSpec,
    read_document,
)

__all__ = [
    "CONTRACT_PATH_ENV",
    "DEFAULT_CONTRACT_PATH",
    "Contract",
    "ContractDocument",
    "ContractError",
    "ContractLoadError",
    "ContractViolation",
    "JsonObject",
    "JsonValue",
    "MessageExample",
    "MessageSpec",
    "contract_path",
    "default_contract",
    "validate_event",
]

# Formats that fastjsonschema does not know and skips silently: a schema that uses one
# must also carry a `pattern`, or the format would be documentation nobody enforces.
# (Checked when loading rather than by teaching fastjsonschema the format, which would
# run a second regex on every such value of every event.)
_UNENFORCED_FORMATS: Final = frozenset({"uuid"})
_DRAFT_07: Final = "http://json-schema.org/draft-07/schema#"
_ROOT_PATH: Final = "$"
_VALUE_NAME: Final = "data"


class ContractViolation(ContractError):
    """An event does not match the contract.

    ``event_type`` is the event's type, or ``None`` when the event has no usable one;
    ``path`` is the dotted JSON path of the offending value relative to the event
    (``event_data.admins[0].email``), ``$`` for the event itself; ``message`` says what
    is wrong with that value.
    """

    def __init__(self, event_type: str | None, path: str, message: str) -> None:
        # Passing the fields to Exception keeps the exception picklable as it is.
        super().__init__(event_type, path, message)
        self.event_type = event_type
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.event_type or '<no event_type>'}: {self.path}: {self.message}"


_Validator: TypeAlias = Callable[[object], object]


class Contract:
    """The loaded contract: message specs, examples and one compiled validator per type."""

    __slots__ = (
        "_certainly_valid",
        "_examples",
        "_messages",
        "_validators",
        "description",
        "path",
        "title",
        "topic",
        "version",
    )

    def __init__(self, document: ContractDocument) -> None:
        """Compile a document read by :func:`pipeline.contract_loader.read_document`."""
        self.path, self.title, self.version = document.path, document.title, document.version
        self.description, self.topic = document.description, document.topic
        self._messages = {spec.event_type: spec for spec in document.messages}
        self._examples = dict(document.examples)
        self._validators = {
            spec.event_type: _compile(spec.payload_schema) for spec in document.messages
        }
        self._certainly_valid: dict[str, Predicate] = {}
        for spec in document.messages:
            predicate = certainly_valid(spec.payload_schema)
            if predicate is not None:
                self._certainly_valid[spec.event_type] = predicate

    @classmethod
    def load(cls, path: Path | None = None) -> Contract:
        """Read, resolve and compile the contract at ``path`` (default: :func:`contract_path`)."""
        return cls(read_document(path if path is not None else contract_path()))

    def quickly_checked_types(self) -> frozenset[str]:
        """The event types whose valid events pass the quick check, without fastjsonschema."""
        return frozenset(self._certainly_valid)

    def event_types(self) -> frozenset[str]:
        """Every event type the contract describes."""
        return frozenset(self._messages)

    def messages(self) -> tuple[MessageSpec, ...]:
        """Every message, in the order the channel lists them."""
        return tuple(self._messages.values())

    def message(self, event_type: str) -> MessageSpec:
        """The spec of one event type; ``KeyError`` if the contract has no such type."""
        return self._messages[event_type]

    def examples(self, event_type: str) -> tuple[MessageExample, ...]:
        """The contract's examples of one event type, as fresh copies the caller may mutate."""
        return tuple(copy.deepcopy(example) for example in self._examples[event_type])

    def validate_event(self, row: Mapping[str, object]) -> None:
        """Check one event (a decoded ``domain_events`` row) against its message's schema.

        Raises :class:`ContractViolation` for an unknown or missing ``event_type`` and for
        the first value that breaks the schema.
        """
        event_type = row.get("event_type")
        if not isinstance(event_type, str):
            raise ContractViolation(
                None, "event_type", f"must be a string naming the event type, got {event_type!r}"
            )
        validator = self._validators.get(event_type)
        if validator is None:
            raise ContractViolation(
                event_type,
                "event_type",
                f"unknown event type {event_type!r}; the contract describes "
                f"{len(self._validators)} types (see {self.path.name})",
            )
        quick = self._certainly_valid.get(event_type)
        if quick is not None and quick(row):
            return
        _run(validator, row, event_type)


def contract_path() -> Path:
    """Where the contract is read from: ``$PIPELINE_CONTRACT_PATH``, else the repository copy."""
    override = os.environ.get(CONTRACT_PATH_ENV)
    return Path(override) if override else DEFAULT_CONTRACT_PATH


@cache
def default_contract() -> Contract:
    """The contract at :func:`contract_path`, loaded and compiled once per process."""
    return Contract.load()


def validate_event(row: Mapping[str, object]) -> None:
    """Check one event against the default contract; raises :class:`ContractViolation`."""
    default_contract().validate_event(row)


# ---- validation --------------------------------------------------------------------


def _compile(schema: JsonObject) -> _Validator:
    _check_formats_enforced(schema, "$")
    # Without `$schema` fastjsonschema assumes draft 2019-09; the contract is draft-07.
    definition = {"$schema": _DRAFT_07, **schema}
    try:
        validator: _Validator = fastjsonschema.compile(
            definition,
            # Defaults would be written into the caller's event; validation must not mutate.
            use_default=False,
        )
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ContractLoadError(f"a schema of the contract does not compile: {exc}") from exc
    return validator


def _check_formats_enforced(node: JsonValue, where: str) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_formats_enforced(item, f"{where}[{index}]")
    elif isinstance(node, dict):
        format_ = node.get("format")
        if format_ in _UNENFORCED_FORMATS and "pattern" not in node:
            raise ContractLoadError(
                f"{where}: `format: {format_}` is not enforced by fastjsonschema; add a pattern"
            )
        for key, value in node.items():
            _check_formats_enforced(value, f"{where}.{key}")


def _run(validator: _Validator, value: Mapping[str, object], event_type: str) -> None:
    # The generated code checks `isinstance(data, dict)`; rows decoded from JSON are dicts.
    data = value if isinstance(value, dict) else dict(value)
    try:
        validator(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        path, message = _describe(exc)
        raise ContractViolation(event_type, path, message) from None


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> tuple[str, str]:
    """Turn fastjsonschema's error into (path relative to the event, message)."""
    name = str(exc.name or _VALUE_NAME)
    text = str(exc.message)
    # fastjsonschema prefixes the message with the value's name; the path says that.
    if text.startswith(name + " "):
        text = text[len(name) + 1 :]
    path = _ROOT_PATH if name == _VALUE_NAME else name.removeprefix(_VALUE_NAME + ".")
    rule = exc.rule
    definition = exc.definition
    value = exc.value
    # For `required` and `additionalProperties` fastjsonschema names the object; the
    # operator needs the property, so point at the first missing or unexpected one.
    if rule == "required" and isinstance(definition, dict) and isinstance(value, dict):
        missing = [key for key in definition.get("required", []) if key not in value]
        if missing:
            return _join(path, str(missing[0])), "required property is missing"
    if rule == "additionalProperties" and isinstance(definition, dict) and isinstance(value, dict):
        allowed = definition.get("properties", {})
        extra = sorted(str(key) for key in value if key not in allowed)
        if extra:
            return _join(path, extra[0]), "property is not allowed by the contract"
    return path, text


def _join(path: str, key: str) -> str:
    return key if path == _ROOT_PATH else f"{path}.{key}"
