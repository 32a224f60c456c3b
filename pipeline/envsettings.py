"""Settings models read from ``PIPELINE_*`` variables with pydantic-settings.

:class:`EnvSettings` is the base of the settings of ``pipeline`` (:mod:`pipeline.config`)
and of the bootstrap worker (:mod:`pipeline.bootstrap.settings`). It differs from a plain
``BaseSettings`` in three ways, each to keep what operators already rely on:

- the environment is a mapping handed to :func:`read` (``os.environ`` in production, a
  dict in tests); a model built in code (``Settings(...)``) reads no environment at all;
- a value is stripped, and an empty one counts as unset (its default applies), as a
  ConfigMap key left blank always did;
- :func:`read` does not raise pydantic's ``ValidationError`` but returns each problem as
  ``(variable, message)``, so the caller reports them with the rest in its own words.

Credentials are ``SecretStr``/``SecretBytes`` fields: ``repr``, ``str`` and logs show
``**********``; the code that connects calls ``.get_secret_value()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

PREFIX = "PIPELINE_"
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})

# The environment of the read in progress; None: a model built in code reads none.
_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("pipeline_settings_env", default=None)
S = TypeVar("S", bound="EnvSettings")
Problems = list[tuple[str, str]]


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping, blank = unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = {name: value.strip() for name, value in env.items()}
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._mapping, self.case_sensitive, True, None)


class EnvSettings(BaseSettings):
    """Frozen settings; each field is read from the variable its ``validation_alias``
    names (written out, so ``grep PIPELINE_X`` finds it and ``pipeline --help`` lists it)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=True,  # PIPELINE_TOPIC, not pipeline_topic, as always
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        arbitrary_types_allowed=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _ENV.get()
        if env is None:
            return (init_settings,)
        return (init_settings, _MappingSource(settings_cls, env))


def variable(cls: type[BaseSettings], key: str | int) -> str:
    """The environment variable of field (or alias) ``key`` of ``cls``."""
    name = str(key)
    field: FieldInfo | None = cls.model_fields.get(name)
    if field is None:  # an alias: the variable itself, as pydantic-settings lowercases it
        return name.upper()
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return PREFIX + name.upper()


def _message(error: Any) -> str:
    if error["type"] == "missing":
        return "is not set"
    cause = error.get("ctx", {}).get("error")
    return str(cause) if isinstance(cause, ValueError) else str(error["msg"])


def read(cls: type[S], env: Mapping[str, str], **given: Any) -> tuple[S | None, Problems]:
    """``cls`` from ``env`` (``given`` values win), or None and every problem found."""
    token = _ENV.set(env)
    try:
        return cls(**given), []
    except ValidationError as exc:
        return None, [(variable(cls, e["loc"][0]), _message(e)) for e in exc.errors()]
    finally:
        _ENV.reset(token)


def flag(value: object) -> object:
    """A boolean written as 1/0, true/false, yes/no or on/off (a ``BeforeValidator``)."""
    if not isinstance(value, str):
        return value
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise ValueError(f"must be true or false, got {value.lower()!r}")
