"""One rule for every test that needs the namespace lab: skip where it cannot be built, except under
BOOTSTRAPD_REQUIRE_LAB=1 (CI), where that is a failure: a lab test must never pass by skipping there."""

from __future__ import annotations

import os

import pytest

from bootstrapd.lab import lab_available


def require_lab() -> None:
    ok, reason = lab_available()
    if not ok:
        if os.environ.get("BOOTSTRAPD_REQUIRE_LAB") == "1":
            pytest.fail(f"lab required but unavailable: {reason}")
        pytest.skip(reason)
