"""The event contract: the AsyncAPI document in ``contracts/``, loaded once, enforced per event.

``contracts/organization-bootstrap-events.yaml`` describes every event on the
``domain-events`` topic: one message per event type, each with a JSON Schema for the whole
``domain_events`` row. This module loads that document, resolves its local ``$ref``s and
compiles one fastjsonschema validator per event type, so checking an event costs one dict
lookup and one call to generated Python code.

A row that breaks the contract raises :class:`ContractViolation`, which names the event
type, the JSON path of the offending value (``event_data.admins[0].email``) and what is
wrong with it; the consumer sends such an event to the dead-letter topic with that reason
(DESIGN.md invariant 7).

The document is found at ``$PIPELINE_CONTRACT_PATH`` when that is set, otherwise next to
the package in the repository (``contracts/`` beside ``pipeline/``).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, TypeAlias

import fastjsonschema
import yaml

try:  # libyaml's parser reads the contract about ten times faster than pure Python.
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, JsonValue]

CONTRACT_PATH_ENV: Final = "PIPELINE_CONTRACT_PATH"
DEFAULT_CONTRACT_PATH: Final = (
    Path(__file__).resolve().parent.parent / "contracts" / "organization-bootstrap-events.yaml"
)

# Formats that fastjsonschema does not know and skips silently: a schema that uses one
# must also carry a `pattern`, or the format would be documentation nobody enforces.
# (Checked when loading rather than by teaching fastjsonschema the format, which would
# run a second regex on every such value of every event.)
_UNENFORCED_FORMATS: Final = frozenset({"uuid"})
_DRAFT_07: Final = "http://json-schema.org/draft-07/schema#"
_ROOT_PATH: Final = "$"
_VALUE_NAME: Final = "data"
_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"


class ContractError(Exception):
    """Base class of the errors of this module."""


class ContractLoadError(ContractError):
    """The contract document cannot be read, resolved or compiled."""


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


@dataclass(frozen=True, slots=True)
class MessageExample:
    """One example of a message, as written in the contract: a full valid event."""

    event_type: str
    name: str
    summary: str
    payload: JsonObject
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """What the contract says about one event type.

    ``payload_schema`` and ``headers_schema`` are the message's schemas with every
    ``$ref`` resolved; ``sent_by`` and ``received_by`` name the operations that send and
    receive the message.
    """

    event_type: str
    message_id: str
    title: str
    summary: str
    description: str
    payload_schema: JsonObject
    headers_schema: JsonObject | None
    sent_by: tuple[str, ...]
    received_by: tuple[str, ...]


_Validator: TypeAlias = Callable[[object], object]


class Contract:
    """The loaded contract: message specs, examples and one compiled validator per type."""

    __slots__ = (
        "_examples",
        "_messages",
        "_validators",
        "description",
        "path",
        "title",
        "topic",
        "version",
    )

    def __init__(
        self,
        *,
        path: Path,
        title: str,
        version: str,
        description: str,
        topic: str,
        messages: tuple[MessageSpec, ...],
        examples: Mapping[str, tuple[MessageExample, ...]],
    ) -> None:
        self.path = path
        self.title = title
        self.version = version
        self.description = description
        self.topic = topic
        self._messages = {spec.event_type: spec for spec in messages}
        self._examples = dict(examples)
        self._validators = {spec.event_type: _compile(spec.payload_schema) for spec in messages}

    @classmethod
    def load(cls, path: Path | None = None) -> Contract:
        """Read, resolve and compile the contract at ``path`` (default: :func:`contract_path`)."""
        return _load(path if path is not None else contract_path())

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


# ---- loading -----------------------------------------------------------------------


class _JsonYamlLoader(_SafeLoader):
    """A SafeLoader that reads scalars as JSON (and YAML 1.2, and the AsyncAPI parser) do.

    YAML 1.1 turns an unquoted ``2025-11-26T03:01:00Z`` into a datetime and ``yes`` or
    ``on`` into booleans; here they stay strings, so an example means the same thing to
    Python as to every other reader of the contract.
    """


_JsonYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_TIMESTAMP_TAG, _BOOL_TAG)]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}
_JsonYamlLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _load(path: Path) -> Contract:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractLoadError(
            f"cannot read the contract at {path}: {exc.strerror}; "
            f"set {CONTRACT_PATH_ENV} to the file's location"
        ) from exc
    try:
        # A SafeLoader subclass: builds plain values only, never arbitrary objects.
        raw: object = yaml.load(text, Loader=_JsonYamlLoader)
    except yaml.YAMLError as exc:
        raise ContractLoadError(f"{path} is not valid YAML: {exc}") from exc
    document = _as_object(_to_json(raw, "$"), "$")
    if not str(document.get("asyncapi", "")).startswith("3."):
        raise ContractLoadError(f"{path} is not an AsyncAPI 3 document")

    channels = _as_object(document.get("channels"), "channels")
    if len(channels) != 1:
        raise ContractLoadError(f"{path} must describe exactly one channel, found {len(channels)}")
    channel_id, channel_node = next(iter(channels.items()))
    channel = _as_object(_resolve(channel_node, document), f"channels.{channel_id}")
    info = _as_object(document.get("info"), "info")
    senders, receivers = _operations_by_message(document, channel_id)

    specs: list[MessageSpec] = []
    examples: dict[str, tuple[MessageExample, ...]] = {}
    channel_messages = _as_object(channel.get("messages"), f"channels.{channel_id}.messages")
    for message_id, node in channel_messages.items():
        where = f"channels.{channel_id}.messages.{message_id}"
        message = _as_object(_resolve(node, document), where)
        spec = _message_spec(message_id, message, where, senders, receivers)
        if spec.event_type in examples:
            raise ContractLoadError(f"{where}: event type {spec.event_type} is described twice")
        specs.append(spec)
        examples[spec.event_type] = _examples(spec.event_type, message, where)
    return Contract(
        path=path,
        title=_text(info, "title"),
        version=_text(info, "version"),
        description=_text(info, "description"),
        topic=_text(channel, "address"),
        messages=tuple(specs),
        examples=examples,
    )


def _operations_by_message(
    document: JsonObject, channel_id: str
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Map each channel message id to the operations that send and that receive it."""
    senders: dict[str, list[str]] = {}
    receivers: dict[str, list[str]] = {}
    prefix = f"#/channels/{channel_id}/messages/"
    operations = document.get("operations") or {}
    for operation_id, node in _as_object(operations, "operations").items():
        operation = _as_object(node, f"operations.{operation_id}")
        target = senders if operation.get("action") == "send" else receivers
        for ref in _as_list(operation.get("messages", []), f"operations.{operation_id}"):
            pointer = _as_object(ref, f"operations.{operation_id}.messages").get("$ref")
            if isinstance(pointer, str) and pointer.startswith(prefix):
                target.setdefault(pointer.removeprefix(prefix), []).append(operation_id)
    return senders, receivers


def _message_spec(
    message_id: str,
    message: JsonObject,
    where: str,
    senders: Mapping[str, list[str]],
    receivers: Mapping[str, list[str]],
) -> MessageSpec:
    event_type = _text(message, "name")
    payload = _as_object(message.get("payload"), f"{where}.payload")
    properties = _as_object(payload.get("properties"), f"{where}.payload.properties")
    event_type_schema = _as_object(properties.get("event_type"), f"{where}.payload.event_type")
    # Validators are chosen by the row's event_type, so a message whose schema pinned a
    # different type would never accept its own events.
    if event_type_schema.get("const") != event_type:
        raise ContractLoadError(
            f"{where}: payload.properties.event_type.const must equal the message name "
            f"{event_type!r}"
        )
    headers = message.get("headers")
    return MessageSpec(
        event_type=event_type,
        message_id=message_id,
        title=_text(message, "title"),
        summary=_text(message, "summary"),
        description=_text(message, "description"),
        payload_schema=payload,
        headers_schema=_as_object(headers, f"{where}.headers") if headers is not None else None,
        sent_by=tuple(senders.get(message_id, ())),
        received_by=tuple(receivers.get(message_id, ())),
    )


def _examples(event_type: str, message: JsonObject, where: str) -> tuple[MessageExample, ...]:
    found: list[MessageExample] = []
    for index, node in enumerate(_as_list(message.get("examples", []), f"{where}.examples")):
        example = _as_object(node, f"{where}.examples[{index}]")
        headers = _as_object(example.get("headers", {}), f"{where}.examples[{index}].headers")
        found.append(
            MessageExample(
                event_type=event_type,
                name=_text(example, "name") or f"example {index}",
                summary=_text(example, "summary"),
                payload=_as_object(example.get("payload"), f"{where}.examples[{index}].payload"),
                headers={key: _text(headers, key) for key in headers},
            )
        )
    return tuple(found)


def _resolve(node: JsonValue, document: JsonObject, seen: tuple[str, ...] = ()) -> JsonValue:
    """Inline every local ``$ref`` under ``node`` (the contract has no recursive schemas)."""
    if isinstance(node, list):
        return [_resolve(item, document, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return {key: _resolve(value, document, seen) for key, value in node.items()}
    if len(node) > 1:
        # Draft-07 ignores a $ref's siblings; a description or pattern written there
        # would be documentation that no validator enforces, so refuse it.
        raise ContractLoadError(f"{ref}: keys beside $ref are ignored by JSON Schema draft-07")
    if ref in seen:
        raise ContractLoadError(f"{ref}: recursive $ref is not supported")
    return _resolve(_pointer(document, ref), document, (*seen, ref))


def _pointer(document: JsonObject, ref: str) -> JsonValue:
    if not ref.startswith("#/"):
        raise ContractLoadError(f"{ref}: only local references (#/...) are supported")
    node: JsonValue = document
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise ContractLoadError(f"{ref}: no such element in the contract")
        node = node[key]
    return node


def _to_json(value: object, where: str) -> JsonValue:
    """Check that YAML gave plain JSON values, and type them as such."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_to_json(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        result: JsonObject = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ContractLoadError(f"{where}: key {key!r} is not a string")
            result[key] = _to_json(item, f"{where}.{key}")
        return result
    raise ContractLoadError(f"{where}: {type(value).__name__} is not a JSON value; quote it")


def _as_object(value: JsonValue, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise ContractLoadError(f"{where}: expected an object")
    return value


def _as_list(value: JsonValue, where: str) -> list[JsonValue]:
    if not isinstance(value, list):
        raise ContractLoadError(f"{where}: expected a list")
    return value


def _text(node: JsonObject, key: str) -> str:
    value = node.get(key, "")
    if not isinstance(value, str):
        raise ContractLoadError(f"{key}: expected a string, got {type(value).__name__}")
    return value
