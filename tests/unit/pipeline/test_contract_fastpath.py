"""The contract's quick check (pipeline/contract_fastpath.py) is sound: it says "certainly
valid" only of what fastjsonschema accepts, so the contract's verdicts never change.

Checked three ways: the contract's own events, mutated at random (values of every JSON
type, look-alike strings, keys removed and added); schemas of the supported subset built
at random, each with random values; and the edges named in the module (a float integer, a
``str`` subclass, ``$`` before a newline). Every rejection's message stays
fastjsonschema's: tests/unit/pipeline/test_contract.py.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline import events
from pipeline.contract import Contract, ContractViolation
from pipeline.contract_fastpath import Predicate, certainly_valid, explain_unsupported
from pipeline.contract_loader import read_document

_DRAFT_07 = "http://json-schema.org/draft-07/schema#"


@functools.cache
def _for_type(
    contract: Contract, event_type: str
) -> tuple[Predicate | None, Callable[[object], bool]]:
    spec = contract.message(event_type)
    return certainly_valid(spec.payload_schema), judge(spec.payload_schema)


def judge(schema: Mapping[str, object]) -> Callable[[object], bool]:
    """fastjsonschema's verdict on ``schema``, compiled as the contract compiles it."""
    validate = fastjsonschema.compile({"$schema": _DRAFT_07, **schema}, use_default=False)

    def accepts(value: object) -> bool:
        try:
            validate(value)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return accepts


@pytest.fixture(scope="module")
def schemas(contract: Contract) -> dict[str, Mapping[str, object]]:
    return {spec.event_type: spec.payload_schema for spec in read_document(contract.path).messages}


# ---- the contract's own events -------------------------------------------------------


def test_every_type_but_the_one_with_one_of_is_checked_quickly(
    contract: Contract, schemas: dict[str, Mapping[str, object]]
) -> None:
    # If a schema change drops a type from the quick check, its events get dearer: this
    # says so. user.invited has `oneOf` (the token or its hash), which is not covered.
    assert contract.quickly_checked_types() == contract.event_types() - {events.USER_INVITED}
    reason = explain_unsupported(schemas[events.USER_INVITED])
    assert reason is not None and "oneOf" in reason


@pytest.mark.parametrize("event_type", sorted(events.ALL_EVENT_TYPES - {events.USER_INVITED}))
def test_every_example_is_certainly_valid(
    contract: Contract, schemas: dict[str, Mapping[str, object]], event_type: str
) -> None:
    quick = certainly_valid(schemas[event_type])
    assert quick is not None
    for item in contract.examples(event_type):
        assert quick(item.payload) is True


_LOOKALIKE_STRINGS = [
    "",
    " ",
    "8d708e92-a1b5-46d7-82e3-5e6f708192a3\n",  # `$` matches before a final newline
    "8D708E92-A1B5-46D7-82E3-5E6F708192A3",
    "8d708e92a1b546d782e35e6f708192a3",
    "org-bootstrap-6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f\n",
    "2025-11-26T03:01:01.800000+00:00\n",
    "2025-11-26 03:01:01+00:00",
    "2025-02-30T03:01:01Z",
    "admin@acme.example\n",
    "admin@@acme.example",
    "a..b@acme.example",
    "acme-health",
    "-acme",
    "x" * 64,
    "x" * 255,
    "x" * 256,
    "é" * 254 + "@a.b",
    "organization",
    "completed",
    "failed",
    "\x00",
]
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from([0, 1, -1, 3.0, 1.5, 2**63]),
    st.text(max_size=40),
    st.sampled_from(_LOOKALIKE_STRINGS),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _parent(event: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        event = event[step]
    return event


@st.composite
def mutated_events(draw: st.DrawFn, contract: Contract) -> tuple[str, object]:
    event_type = draw(st.sampled_from(sorted(contract.event_types())))
    examples = contract.examples(event_type)
    event: Any = copy.deepcopy(draw(st.sampled_from(examples)).payload)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(event)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add", "retype"]))
        if not path:
            if action == "replace":
                event = draw(_json)
            continue
        parent = _parent(event, path)
        key = path[-1]
        if action == "replace":
            parent[key] = draw(_json)
        elif action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(_json)
        elif action == "retype":
            current = parent[key]
            parent[key] = draw(
                st.sampled_from(
                    [str(current), [current], {"value": current}, None, True, 1.0, (current,)]
                )
            )
        if not isinstance(event, (dict, list)):
            break
    return event_type, event


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_event_is_quickly_passed_only_if_fastjsonschema_accepts_it(
    contract: Contract, data: st.DataObject
) -> None:
    event_type, event = data.draw(mutated_events(contract))
    quick, accepts = _for_type(contract, event_type)
    if quick is not None and quick(event):
        assert accepts(event), f"quick check passed what the contract rejects: {event!r}"
    # And the contract's verdict is fastjsonschema's, quick check or not.
    if isinstance(event, dict) and event.get("event_type") == event_type:
        try:
            contract.validate_event(event)
        except ContractViolation:
            assert not accepts(event)
        else:
            assert accepts(event)


# ---- schemas of the supported subset, built at random --------------------------------

_patterns = st.sampled_from(["^[0-9a-f]{4}$", "^a", "b$", "^[^@\\s]+@[^@\\s]+$", "x"])
_formats = st.sampled_from(["date-time", "email", "hostname", "uuid", "ipv4", "date"])


def _string_schema() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={
            "minLength": st.integers(0, 5),
            "maxLength": st.integers(0, 40),
            "pattern": _patterns,
            "format": _formats,
            "const": st.sampled_from(["a", "abcd", "x@y.z"]),
            "enum": st.lists(st.sampled_from(["a", "b", "0a1b", ""]), min_size=1, max_size=3),
            "description": st.text(max_size=5),
        },
    )


_integer_schema = st.fixed_dictionaries(
    {"type": st.just("integer")},
    optional={"minimum": st.integers(-3, 3), "maximum": st.integers(-3, 10)},
)
_leaf_schema = st.one_of(
    _string_schema(),
    _integer_schema,
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.just({}),
    st.just({"description": "anything"}),
)


def _nullable(schema: dict[str, object]) -> dict[str, object]:
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null" and "const" not in schema and "enum" not in schema:
        return {**schema, "type": [kind, "null"]}
    return schema


def _containers(
    inner: st.SearchStrategy[dict[str, object]],
) -> st.SearchStrategy[dict[str, object]]:
    names = st.sampled_from(["a", "b", "c", "d"])
    objects = st.dictionaries(names, inner, max_size=3).flatmap(
        lambda properties: st.fixed_dictionaries(
            {"type": st.just("object"), "properties": st.just(properties)},
            optional={
                "required": st.lists(names, unique=True, max_size=3),
                "additionalProperties": st.booleans(),
            },
        )
    )
    arrays = st.fixed_dictionaries(
        {"type": st.just("array")},
        optional={"items": inner, "minItems": st.integers(0, 2), "maxItems": st.integers(0, 3)},
    )
    return st.one_of(objects, arrays)


_schemas = st.recursive(_leaf_schema, _containers, max_leaves=8).flatmap(
    lambda schema: st.sampled_from([schema, _nullable(schema)])
)


def _values_for(schema: Mapping[str, object]) -> st.SearchStrategy[object]:
    """Values near the schema: of its shape, often valid, often just off."""
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    options: list[st.SearchStrategy[object]] = [_json]
    if "string" in kinds:
        options.append(
            st.sampled_from(["a", "abcd", "0a1b", "0a1b\n", "x@y.z", "b", "ab", "", "12:00:00"])
        )
        options.append(st.sampled_from(_LOOKALIKE_STRINGS))
    if "integer" in kinds:
        options.append(st.sampled_from([-4, -3, 0, 3, 10, 11, 3.0, True]))
    if "object" in kinds:
        properties = schema.get("properties", {})
        assert isinstance(properties, Mapping)
        options.append(
            st.fixed_dictionaries(
                {},
                optional={
                    **{name: _values_for(sub) for name, sub in properties.items()},  # type: ignore[arg-type]
                    "e": _json,
                },
            )
        )
    if "array" in kinds:
        items = schema.get("items", {})
        assert isinstance(items, Mapping)
        options.append(st.lists(_values_for(items), max_size=4))
    if "null" in kinds:
        options.append(st.none())
    return st.one_of(options)


def _judge_or_assume(schema: Mapping[str, object]) -> Callable[[object], bool]:
    # A random schema can be one fastjsonschema refuses to compile (a required property
    # that additionalProperties forbids): not a schema the contract could hold.
    try:
        return judge(schema)
    except fastjsonschema.JsonSchemaDefinitionException:
        assume(False)
        raise


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), schema=_schemas)
def test_for_any_schema_of_the_subset_a_quick_pass_is_a_pass(
    data: st.DataObject, schema: dict[str, object]
) -> None:
    quick = certainly_valid(schema)
    assert quick is not None, explain_unsupported(schema)
    accepts = _judge_or_assume(schema)
    for _ in range(5):
        value = data.draw(_values_for(schema))
        if quick(value):
            assert accepts(value), f"schema {schema!r} value {value!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(schema=_schemas)
def test_the_quick_check_leaves_few_valid_values_to_fastjsonschema(
    schema: dict[str, object],
) -> None:
    # Completeness where it matters: a value built of exact JSON types that the schema
    # accepts is passed quickly. The one intended gap, floats that are integers, is
    # avoided by building values of exact types only.
    quick = certainly_valid(schema)
    assert quick is not None
    accepts = _judge_or_assume(schema)
    for value in _simple_values(schema):
        if accepts(value):
            assert quick(value), f"schema {schema!r} value {value!r}"


def _simple_values(schema: Mapping[str, object]) -> list[object]:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    values: list[object] = [None, True, 0, 3, -3, 10, "a", "abcd", "0a1b", "x@y.z", "", [], {}]
    if "object" in kinds:
        properties = schema.get("properties", {})
        assert isinstance(properties, Mapping)
        full: dict[str, object] = {}
        for name, sub in properties.items():
            candidates = [v for v in _simple_values(sub) if judge(sub)(v)]
            if candidates:
                full[name] = candidates[0]
        values.append(full)
    if "array" in kinds:
        items = schema.get("items", {})
        assert isinstance(items, Mapping)
        good = [v for v in _simple_values(items) if judge(items)(v)]
        values += [good[:1], good[:2], good[:3]]
    return values


# ---- the edges -----------------------------------------------------------------------


def _quick(schema: Mapping[str, object]) -> Predicate:
    quick = certainly_valid(schema)
    assert quick is not None
    return quick


def test_an_integer_written_as_a_float_is_left_to_fastjsonschema(contract: Contract) -> None:
    event = contract.examples(events.INVITATION_EMAIL_SENT)[0].payload
    event["stream_version"] = 8.0
    assert not _quick({"type": "integer"})(8.0)
    contract.validate_event(event)  # fastjsonschema accepts it, as it always did
    event["stream_version"] = True
    with pytest.raises(ContractViolation, match="stream_version"):
        contract.validate_event(event)


def test_a_str_subclass_is_left_to_fastjsonschema(contract: Contract) -> None:
    class Text(str):
        pass

    event = contract.examples(events.INVITATION_EMAIL_SENT)[0].payload
    event["stream_type"] = Text("organization")
    assert not _quick({"type": "string"})(Text("a"))
    contract.validate_event(event)


def test_patterns_read_dollar_as_the_end_of_the_text() -> None:
    quick = _quick({"type": "string", "pattern": "^[0-9a-f]{4}$"})
    assert quick("0a1b")
    assert not quick("0a1b\n")
    assert not judge({"type": "string", "pattern": "^[0-9a-f]{4}$"})("0a1b\n")


def test_a_nullable_string_takes_none_and_checks_a_string() -> None:
    quick = _quick({"type": ["string", "null"], "minLength": 1, "maxLength": 3})
    assert quick(None) and quick("abc")
    assert not quick("") and not quick("abcd") and not quick(1)


def test_a_tuple_is_not_vouched_for_as_an_array() -> None:
    assert not _quick({"type": "array"})((1, 2))
    assert judge({"type": "array"})((1, 2))


def test_an_unknown_format_is_skipped_as_fastjsonschema_skips_it() -> None:
    assert _quick({"type": "string", "format": "uuid"})("not a uuid")
    assert judge({"type": "string", "format": "uuid"})("not a uuid")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"allOf": [{"type": "string"}]},
        {"$ref": "#/definitions/x"},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "number"},
        {"type": ["string", "integer"]},
        {"type": "integer", "const": 1},
        {"type": ["string", "null"], "const": "a"},
        {"type": "string", "enum": ["a", 1]},
        {"type": "string", "format": "regex"},
        {"type": "array", "items": [{"type": "string"}]},
        {"type": "integer", "exclusiveMinimum": 0},
        {"minLength": 1},
        {"type": "string", "minLength": 1.5},
        {"type": "object", "properties": {"a": {"type": "object", "if": {}}}},
    ],
)
def test_anything_outside_the_subset_has_no_quick_check(schema: dict[str, object]) -> None:
    assert certainly_valid(schema) is None
    assert explain_unsupported(schema)
