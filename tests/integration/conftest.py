"""Integration fixtures: by default one raw (scapy) client on the staging LAN; modules that need another
LAN define their own `lan`, which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bootstrapd.lab import Lab, StagingLan, staging_lan
from tests.integration.dhcp_client import RawClient


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=1)


@pytest.fixture
def client(lan: StagingLan) -> Iterator[RawClient]:
    with RawClient(lan.clients[0]) as raw:
        yield raw
