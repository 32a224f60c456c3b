"""``PIPELINE_EVENT_LOOP``: uvloop unless told otherwise, asyncio on request, a clear
error for anything else; the loop ``run`` and ``new_loop`` make is the one chosen."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from pipeline import eventloop
from pipeline.errors import ConfigError


def test_uvloop_is_the_default() -> None:
    assert eventloop.chosen({}) == "uvloop"
    assert eventloop.chosen({"PIPELINE_EVENT_LOOP": " "}) == "uvloop"


def test_a_choice_is_read_whatever_its_case() -> None:
    assert eventloop.chosen({"PIPELINE_EVENT_LOOP": "AsyncIO"}) == "asyncio"
    assert eventloop.chosen({"PIPELINE_EVENT_LOOP": "uvloop"}) == "uvloop"


def test_anything_else_is_a_configuration_error() -> None:
    with pytest.raises(
        ConfigError, match=r"PIPELINE_EVENT_LOOP must be one of uvloop, asyncio.*got 'tokio'"
    ):
        eventloop.chosen({"PIPELINE_EVENT_LOOP": "tokio"})


@pytest.mark.parametrize(
    "value",
    [
        "uvloop,asyncio",
        "uv loop",
        "\uff55\uff56\uff4c\uff4f\uff4f\uff50",
        "asyncio;rm -rf /",
        "x" * 10_000,
        "uvloop\u200b",
    ],
)
def test_a_value_that_only_looks_like_a_loop_is_refused_and_named(value: str) -> None:
    # Lists, spaces inside, full-width letters, a zero-width space: none is quietly read
    # as a loop; the error quotes the value (repr: control and invisible characters show).
    found = eventloop.problems({"PIPELINE_EVENT_LOOP": value})
    assert found == [("PIPELINE_EVENT_LOOP", eventloop._unknown(value.strip().lower()))]
    assert repr(value.strip().lower()) in found[0][1]
    with pytest.raises(ConfigError, match="PIPELINE_EVENT_LOOP must be one of"):
        eventloop.chosen({"PIPELINE_EVENT_LOOP": value})


def test_surrounding_whitespace_is_not_part_of_the_value() -> None:
    # A ConfigMap value with a trailing newline or a non-breaking space (YAML block
    # scalars, copy and paste) still names the loop.
    assert eventloop.chosen({"PIPELINE_EVENT_LOOP": " asyncio\n"}) == "asyncio"
    assert eventloop.chosen({"PIPELINE_EVENT_LOOP": "uvloop\u00a0"}) == "uvloop"
    assert eventloop.problems({"PIPELINE_EVENT_LOOP": "\tASYNCIO "}) == []


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.mark.parametrize(
    ("name", "kind"), [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)]
)
def test_the_loop_run_uses_is_the_chosen_one(
    monkeypatch: pytest.MonkeyPatch, name: str, kind: type
) -> None:
    monkeypatch.setenv("PIPELINE_EVENT_LOOP", name)
    loop = eventloop.run(_running_loop())
    assert isinstance(loop, kind)
    assert (name == "uvloop") == isinstance(loop, uvloop.Loop)
    made = eventloop.new_loop()
    try:
        assert type(made) is type(loop)
    finally:
        made.close()


def test_the_settings_list_it_with_every_other_problem() -> None:
    from pipeline.bootstrap.settings import from_env
    from pipeline.config import load_settings

    env = {
        "PIPELINE_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/pipeline",
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "PIPELINE_TEMPORAL_ADDRESS": "127.0.0.1:7233",
        "PIPELINE_INVITATION_KEY": "k" * 40,
        "PIPELINE_EVENT_LOOP": "gevent",
        "PIPELINE_WEB_PORT": "70000",
        "PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S": "soon",
    }
    for load in (load_settings, from_env):
        with pytest.raises(ConfigError) as raised:
            load(env)
        message = str(raised.value)
        # In the shape of the other lines of the same list.
        expected = {
            load_settings: "  - PIPELINE_EVENT_LOOP (ConfigMap pipeline-config): must be one of",
            from_env: "  PIPELINE_EVENT_LOOP must be one of uvloop, asyncio (default uvloop), "
            "got 'gevent' (ConfigMap)",
        }[load]
        assert expected in message
        assert ("PIPELINE_WEB_PORT" if load is load_settings else "GRACEFUL_SHUTDOWN") in message
    valid = {
        k: v
        for k, v in env.items()
        if k not in {"PIPELINE_WEB_PORT", "PIPELINE_WORKER_GRACEFUL_SHUTDOWN_S"}
    }
    valid["PIPELINE_EVENT_LOOP"] = "asyncio"
    load_settings(valid)
    from_env(valid)
