"""Option negotiation as a table: the client's options and our limits -> the OACK (RFC 2347-2349, 7440)."""

from __future__ import annotations

import pytest

from bootstrapd.tftp.options import Limits, Negotiated, negotiate

LIMITS = Limits(blksize_max=1468, windowsize_max=64, mtu=1500)
SIZE = 4321


@pytest.mark.parametrize(("options", "expected"), [
    ((), Negotiated()),
    ((("blksize", "1024"),), Negotiated(1024, oack=(("blksize", "1024"),))),
    ((("blksize", "8"),), Negotiated(8, oack=(("blksize", "8"),))),
    ((("blksize", "65464"),), Negotiated(1468, oack=(("blksize", "1468"),))),  # clamped to blksize_max
    ((("blksize", "1500"),), Negotiated(1468, oack=(("blksize", "1468"),))),
    # out of RFC 2348's range or not a number: ignored, left out of the OACK, 512 applies
    *[((("blksize", v),), Negotiated()) for v in ("0", "7", "-1", "abc", "65465", "999999", "", " 512", "+9")],
    ((("tsize", "0"),), Negotiated(oack=(("tsize", str(SIZE)),))),
    ((("tsize", "77"),), Negotiated(oack=(("tsize", str(SIZE)),))),  # the real size, whatever was sent
    ((("tsize", "x"),), Negotiated()),
    ((("timeout", "1"),), Negotiated(timeout=1, oack=(("timeout", "1"),))),
    ((("timeout", "255"),), Negotiated(timeout=255, oack=(("timeout", "255"),))),
    ((("timeout", "0"),), Negotiated()),
    ((("timeout", "256"),), Negotiated()),
    ((("windowsize", "16"),), Negotiated(windowsize=16, oack=(("windowsize", "16"),))),
    ((("windowsize", "65535"),), Negotiated(windowsize=64, oack=(("windowsize", "64"),))),
    ((("windowsize", "0"),), Negotiated()),
    ((("windowsize", "65536"),), Negotiated()),
    # a repeated option is ambiguous: both ignored; the others still negotiated
    ((("blksize", "1024"), ("blksize", "512"), ("tsize", "0")), Negotiated(oack=(("tsize", str(SIZE)),))),
    ((("multicast", ""), ("rollover", "1"), ("utimeout", "5000")), Negotiated()),  # unknown: ignored
    # the OACK keeps the client's order and only what it asked
    ((("tsize", "0"), ("windowsize", "4"), ("blksize", "1432")),
     Negotiated(1432, 4, None, (("tsize", str(SIZE)), ("windowsize", "4"), ("blksize", "1432")))),
])
def test_negotiation_table(options: tuple[tuple[str, str], ...], expected: Negotiated) -> None:
    assert negotiate(options, LIMITS, SIZE) == expected


def test_blksize_is_clamped_to_the_interface_mtu() -> None:
    small = Limits(blksize_max=8192, mtu=1280)
    assert negotiate((("blksize", "4096"),), small, 0).blksize == 1280 - 32
    jumbo = Limits(blksize_max=8192, mtu=9000)
    assert negotiate((("blksize", "65464"),), jumbo, 0).oack == (("blksize", "8192"),)
