"""Fixtures shared by the unit tests of the pipeline package."""

from __future__ import annotations

import pytest

from pipeline.contract import DEFAULT_CONTRACT_PATH, Contract


@pytest.fixture(scope="module")
def contract() -> Contract:
    """The project's contract document, loaded once per test module."""
    return Contract.load(DEFAULT_CONTRACT_PATH)
