"""A quick "certainly valid" for the contract's common case; fastjsonschema stays the judge.

The contract's validators (:mod:`pipeline.contract`, fastjsonschema) explain a rejection
precisely: the value's path and the rule it breaks. They pay for that on every event,
valid or not: each object's keys copied into a set and removed one by one, every value's
type tested twice, every check's error text and schema kept ready beside it. The
projection runs one for every record of the topic, and it is the largest single part of
`pipeline run`'s CPU per event (docs/benchmarks.md).

:func:`certainly_valid` compiles a message's JSON Schema into a predicate that answers
one question: is this decoded event certainly valid? It is *sound*, not *complete*:

- ``True`` only when fastjsonschema's validator of the same schema accepts the value;
- ``False`` for everything else, including valid values it does not vouch for (an
  integer written ``3.0``, a ``str`` subclass, a tuple for an array). The caller then
  runs fastjsonschema, whose verdict and message count.

So the predicate can only be stricter than the contract, never looser, and an event's
verdict and dead-letter reason are fastjsonschema's whether the predicate ran or not.

It covers the subset of JSON Schema the contract uses for most of its messages (below);
a schema with anything else (``oneOf``, ``anyOf``, ``patternProperties``, a schema for
``additionalProperties``, ``number``, ...) compiles to ``None``, and its events always go
to fastjsonschema. Patterns and formats use the same regular expressions, compiled and
applied the way fastjsonschema's generated code does (``$`` read as ``\\Z``; ``search``
for ``pattern``, ``match`` for ``format``).

Supported, per schema node (``type`` is required on any node that constrains a value):

- ``type``: one of ``string``, ``integer``, ``boolean``, ``object``, ``array``, ``null``,
  or a list of one of those and ``null``;
- strings: ``minLength``, ``maxLength``, ``pattern``, ``format``, ``const``, ``enum``
  (``const`` and ``enum`` only of strings, on a node that is only ``string``);
- integers: ``minimum``, ``maximum``;
- objects: ``required``, ``properties``, ``additionalProperties`` (``true``/``false``);
- arrays: ``items`` (one schema), ``minItems``, ``maxItems``;
- annotations, which validate nothing: ``description``, ``title``, ``examples``,
  ``$comment``, ``deprecated``, ``default`` (never applied: the contract compiles with
  ``use_default=False``), ``readOnly``, ``writeOnly``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from fastjsonschema.draft04 import DOLLAR_FINDER
from fastjsonschema.draft07 import CodeGeneratorDraft07

Predicate = Callable[[object], bool]

_ANNOTATIONS: Final = frozenset(
    {
        "description",
        "title",
        "examples",
        "$comment",
        "deprecated",
        "default",
        "readOnly",
        "writeOnly",
    }
)
_TYPE_TEST: Final = {
    "string": "type({v}) is str",
    "integer": "type({v}) is int",
    "boolean": "type({v}) is bool",
    "object": "type({v}) is dict",
    "array": "type({v}) is list",
}
_KEYWORDS: Final = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format", "const", "enum"}),
    "integer": frozenset({"minimum", "maximum"}),
    "boolean": frozenset(),
    "object": frozenset({"required", "properties", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "null": frozenset(),
}
# fastjsonschema's own format expressions (draft-07); a format it does not know it skips.
_FORMATS: Final[Mapping[str, str]] = CodeGeneratorDraft07.FORMAT_REGEXS
_ROOT: Final = "value"


class Unsupported(Exception):
    """The schema uses something this compiler does not vouch for."""


def certainly_valid(schema: Mapping[str, object]) -> Predicate | None:
    """The predicate for ``schema`` (see the module's docstring), or ``None`` when the
    schema uses anything outside the supported subset."""
    try:
        return _Compiler().compile(schema)
    except Unsupported:
        return None


def explain_unsupported(schema: Mapping[str, object]) -> str | None:
    """Why ``schema`` has no predicate (``None`` when it has one): for tests and docs."""
    try:
        _Compiler().compile(schema)
    except Unsupported as exc:
        return str(exc)
    return None


class _Compiler:
    """Generates one flat Python function of early ``return False`` checks per schema."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: dict[str, object] = {}
        self._count = 0

    def compile(self, schema: Mapping[str, object]) -> Predicate:
        self._lines = [f"def certainly_valid({_ROOT}):"]
        self._node(schema, _ROOT, 1, "$")
        self._lines.append("    return True")
        namespace = dict(self._names)
        exec("\n".join(self._lines), namespace)  # our own generated source
        predicate = namespace["certainly_valid"]
        assert callable(predicate)
        return predicate

    def source(self) -> str:
        """The generated source (after :meth:`compile`), for debugging."""
        return "\n".join(self._lines)

    # ---- emitting -----------------------------------------------------------------

    def _emit(self, depth: int, line: str) -> None:
        self._lines.append("    " * depth + line)

    def _fail_unless(self, depth: int, condition: str) -> None:
        self._emit(depth, f"if not ({condition}):")
        self._emit(depth + 1, "return False")

    def _var(self) -> str:
        self._count += 1
        return f"v{self._count}"

    def _constant(self, value: object) -> str:
        name = f"_k{len(self._names)}"
        self._names[name] = value
        return name

    # ---- schema nodes -------------------------------------------------------------

    def _node(self, schema: object, var: str, depth: int, where: str) -> None:
        if not isinstance(schema, Mapping):
            raise Unsupported(f"{where}: a schema that is not an object")
        keywords = set(schema) - _ANNOTATIONS
        if not keywords:
            return  # accepts anything, as it does in fastjsonschema
        if "type" not in keywords:
            raise Unsupported(f"{where}: constraints without a `type`")
        types = _types(schema["type"], where)
        nullable = "null" in types
        kinds = [t for t in types if t != "null"]
        allowed = {"type"}.union(*(_KEYWORDS[t] for t in types))
        unknown = keywords - allowed
        if unknown:
            raise Unsupported(f"{where}: keyword(s) {sorted(unknown)} for type {types}")
        if not kinds:  # only null
            self._fail_unless(depth, f"{var} is None")
            return
        (kind,) = kinds
        if ("const" in keywords or "enum" in keywords) and nullable:
            raise Unsupported(f"{where}: const/enum on a nullable type")
        if nullable:
            self._emit(depth, f"if {var} is not None:")
            depth += 1
        # One test per value: its type and every scalar constraint, joined with `and`.
        conditions = [_TYPE_TEST[kind].format(v=var)]
        if kind == "string":
            conditions += self._string(schema, var, where)
        elif kind == "integer":
            conditions += _integer(schema, var, where)
        elif kind == "object":
            conditions += self._object_keys(schema, var, where)
        elif kind == "array":
            conditions += _array_length(schema, var, where)
        self._fail_unless(depth, " and ".join(conditions))
        if kind == "object":
            self._properties(schema, var, depth, where)
        elif kind == "array":
            self._items(schema, var, depth, where)

    def _string(self, schema: Mapping[str, object], var: str, where: str) -> list[str]:
        conditions = []
        if "minLength" in schema:
            conditions.append(f"len({var}) >= {_count(schema['minLength'], where)}")
        if "maxLength" in schema:
            conditions.append(f"len({var}) <= {_count(schema['maxLength'], where)}")
        if "const" in schema:
            const = schema["const"]
            if not isinstance(const, str):
                raise Unsupported(f"{where}: a const that is not a string")
            conditions.append(f"{var} == {const!r}")
        if "enum" in schema:
            enum = schema["enum"]
            if not isinstance(enum, list) or not all(isinstance(item, str) for item in enum):
                raise Unsupported(f"{where}: an enum not all of strings")
            conditions.append(f"{var} in {self._constant(frozenset(enum))}")
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not isinstance(pattern, str):
                raise Unsupported(f"{where}: a pattern that is not a string")
            search = re.compile(DOLLAR_FINDER.sub(r"\\Z", pattern)).search
            conditions.append(f"{self._constant(search)}({var})")
        if "format" in schema:
            format_ = schema["format"]
            if format_ == "regex" or not isinstance(format_, str):
                raise Unsupported(f"{where}: format {format_!r}")
            if format_ in _FORMATS:
                match = re.compile(_FORMATS[format_]).match
                conditions.append(f"{self._constant(match)}({var})")
            # Any other format fastjsonschema skips, and so does this.
        return conditions

    def _object_keys(self, schema: Mapping[str, object], var: str, where: str) -> list[str]:
        conditions = []
        required = _required(schema, where)
        additional = schema.get("additionalProperties", True)
        if not isinstance(additional, bool):
            raise Unsupported(f"{where}: additionalProperties that is a schema")
        if required:
            conditions.append(f"{var}.keys() >= {self._constant(frozenset(required))}")
        if not additional:
            names = frozenset(_properties(schema, where))
            conditions.append(f"{var}.keys() <= {self._constant(names)}")
        return conditions

    def _properties(self, schema: Mapping[str, object], var: str, depth: int, where: str) -> None:
        required = _required(schema, where)
        for name, subschema in _properties(schema, where).items():
            child = self._var()
            inner = f"{where}.{name}"
            if name in required:
                self._emit(depth, f"{child} = {var}[{name!r}]")
                self._node(subschema, child, depth, inner)
            else:
                mark = len(self._lines)
                self._emit(depth, f"if {name!r} in {var}:")
                self._emit(depth + 1, f"{child} = {var}[{name!r}]")
                before = len(self._lines)
                self._node(subschema, child, depth + 1, inner)
                if len(self._lines) == before:  # the property accepts anything
                    del self._lines[mark:]

    def _items(self, schema: Mapping[str, object], var: str, depth: int, where: str) -> None:
        if "items" in schema:
            items = schema["items"]
            if not isinstance(items, Mapping):
                raise Unsupported(f"{where}: items that is not one schema")
            item = self._var()
            mark = len(self._lines)
            self._emit(depth, f"for {item} in {var}:")
            before = len(self._lines)
            self._node(items, item, depth + 1, f"{where}[]")
            if len(self._lines) == before:
                del self._lines[mark:]


def _integer(schema: Mapping[str, object], var: str, where: str) -> list[str]:
    conditions = []
    for keyword, operator in (("minimum", ">="), ("maximum", "<=")):
        if keyword in schema:
            bound = schema[keyword]
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise Unsupported(f"{where}: {keyword} {bound!r}")
            conditions.append(f"{var} {operator} {bound!r}")
    return conditions


def _array_length(schema: Mapping[str, object], var: str, where: str) -> list[str]:
    conditions = []
    if "minItems" in schema:
        conditions.append(f"len({var}) >= {_count(schema['minItems'], where)}")
    if "maxItems" in schema:
        conditions.append(f"len({var}) <= {_count(schema['maxItems'], where)}")
    return conditions


def _required(schema: Mapping[str, object], where: str) -> list[str]:
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
        raise Unsupported(f"{where}: required that is not a list of names")
    return required


def _properties(schema: Mapping[str, object], where: str) -> Mapping[str, object]:
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or not all(isinstance(k, str) for k in properties):
        raise Unsupported(f"{where}: properties that are not an object of names")
    return properties


def _types(declared: object, where: str) -> Sequence[str]:
    types = [declared] if isinstance(declared, str) else declared
    if not isinstance(types, list) or not types:
        raise Unsupported(f"{where}: type {declared!r}")
    for name in types:
        if name not in _KEYWORDS:
            raise Unsupported(f"{where}: type {name!r}")
    if len(set(types)) != len(types) or len([t for t in types if t != "null"]) > 1:
        raise Unsupported(f"{where}: type {declared!r}")
    return types


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unsupported(f"{where}: a length bound {value!r}")
    return value
