"""Fixtures of the engine unit tests."""

from pathlib import Path

import pytest
from fake_client import Wire, make_site


@pytest.fixture
def wire(tmp_path: Path) -> Wire:
    """The engine on the default test site, a memory store and a clock."""
    return Wire(make_site(tmp_path))
