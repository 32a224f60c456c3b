"""The event contract's document: ``contracts/organization-bootstrap-events.yaml``, an
AsyncAPI 3 document, read and turned into plain values (:class:`ContractDocument`): one
:class:`MessageSpec` per event type with every local ``$ref`` resolved, and the
message's examples. No validation here: :mod:`pipeline.contract` compiles the schemas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import yaml

from pipeline.errors import PipelineError

# libyaml's parser reads the contract much faster than pure Python (docs/benchmarks.md,
# "Figures the code used to quote").
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = dict[str, JsonValue]

CONTRACT_PATH_ENV: Final = "PIPELINE_CONTRACT_PATH"
DEFAULT_CONTRACT_PATH: Final = (
    Path(__file__).resolve().parent.parent / "contracts" / "organization-bootstrap-events.yaml"
)
_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"


class ContractError(PipelineError):
    """Base class of the errors of this module."""


class ContractLoadError(ContractError):
    """The contract document cannot be read, resolved or compiled."""


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


@dataclass(frozen=True, slots=True)
class ContractDocument:
    """What the document says: its info, the channel's address, the messages in the
    order the channel lists them, and each event type's examples."""

    path: Path
    title: str
    version: str
    description: str
    topic: str
    messages: tuple[MessageSpec, ...]
    examples: dict[str, tuple[MessageExample, ...]]


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


def read_document(path: Path) -> ContractDocument:
    """Read and resolve the contract at ``path``; :class:`ContractLoadError` names what
    is wrong with it."""
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
    return ContractDocument(
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
