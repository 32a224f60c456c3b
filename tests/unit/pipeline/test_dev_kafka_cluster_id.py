"""The dev broker's cluster id: Kafka's storage tool reads an id starting with ``-`` as an
option and refuses to format, so ``pipeline dev up`` failed one time in 64."""

from __future__ import annotations

import base64
import re
import uuid

from pipeline.dev.kafka import new_cluster_id

# 0xf8 -> the first base64 character is '-' (index 62 in the URL-safe alphabet).
DASH_FIRST = bytes([0xF8]) + bytes(15)


def test_an_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    assert base64.urlsafe_b64encode(DASH_FIRST).decode().startswith("-")
    draws = iter([DASH_FIRST, DASH_FIRST, uuid.UUID(int=1).bytes])
    assert new_cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAQ"


def test_ids_are_22_url_safe_characters_never_led_by_a_dash() -> None:
    ids = {new_cluster_id() for _ in range(5_000)}  # about 78 would start with '-' before
    assert len(ids) == 5_000
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id), cluster_id
