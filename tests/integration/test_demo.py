"""The README's main job (`make demo`) works: the example site served to phones on a virtual LAN."""

from __future__ import annotations

import pytest

from bootstrapd.lab.demo import EXAMPLE, run_demo


def test_demo_leases_every_phone_and_provisions_only_phones(lab_support: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(4, EXAMPLE) == 0
    out = capsys.readouterr().out
    assert "5/5 devices leased, 5 distinct addresses, 4 given a provisioning URL" in out
    assert "DNS SRV _ciscoprov-https._tls: 10 0 443 prov1.staging.example.net." in out
    assert "demo passed" in out
