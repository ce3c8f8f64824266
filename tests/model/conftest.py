"""Fixtures for the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["ttm", "transformer"])
def combiner_kind(request) -> str:
    return request.param
