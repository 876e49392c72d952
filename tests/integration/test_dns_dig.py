"""dig and kdig against the real daemon (`bootstrapd run`) in the lab: the server namespace serves
198.18.0.1:53, a client namespace on the staging LAN asks."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon
from tests.integration.dns_fixtures import BIG_TXT, dns_site_config
from tests.labreq import require_lab

SERVER = "198.18.0.1"
HTTPS = "_ciscoprov-https._tls.staging.test"

pytestmark = pytest.mark.lab


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")


@dataclass
class DnsLab:
    lan: StagingLan
    daemon: Daemon
    client: Host  # 198.18.0.200, asks with dig and kdig


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """One lab and one daemon for the whole module (starting them is most of each test's time)."""
    require_lab()
    need("dig", "kdig", "udhcpc")
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        daemon = Daemon(lan.server, tmp_path_factory.mktemp("dns-daemon"), dns_site_config()).start()
        yield DnsLab(lan, daemon, lan.static_client("198.18.0.200/23", name="asker"))
    finally:
        lab.close()


@pytest.fixture
def client(env: DnsLab) -> Host:
    return env.client


def dig(client: Host, *args: str) -> str:
    out = client.run(["dig", f"@{SERVER}", "+time=2", "+tries=1", *args], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def section(output: str, name: str) -> list[str]:
    """Records of one section of dig's output, whitespace-normalised."""
    lines = output.splitlines()
    try:
        start = lines.index(f";; {name} SECTION:") + 1
    except ValueError:
        return []
    out = []
    for line in lines[start:]:
        if not line.strip():
            break
        out.append(" ".join(line.split()))
    return out


def test_srv_with_glue_over_udp_and_tcp(client: Host) -> None:
    for transport in ("+notcp", "+tcp"):
        out = dig(client, transport, HTTPS, "SRV")
        assert "status: NOERROR" in out and "flags: qr aa rd;" in out
        assert section(out, "ANSWER") == [
            f"{HTTPS}. 300 IN SRV 10 0 443 prov1.staging.test.",
            f"{HTTPS}. 300 IN SRV 20 0 443 prov2.staging.test.",
        ]
        assert section(out, "ADDITIONAL") == [
            "prov1.staging.test. 300 IN A 198.18.0.10",
            "prov2.staging.test. 300 IN A 198.18.0.11",
        ]


def test_nxdomain_and_nodata_carry_soa(client: Host) -> None:
    for name, rdtype, status in [("nope.staging.test", "A", "NXDOMAIN"), ("prov1.staging.test", "AAAA", "NOERROR"),
                                 ("_tls.staging.test", "A", "NOERROR")]:
        out = dig(client, name, rdtype)
        assert f"status: {status}" in out and "ANSWER: 0, AUTHORITY: 1" in out
        [soa] = section(out, "AUTHORITY")
        assert soa.startswith("staging.test. 60 IN SOA ns1.staging.test. hostmaster.staging.test. ")


def test_outside_the_zone_is_refused(client: Host) -> None:
    out = dig(client, "example.com.", "A")
    assert "status: REFUSED" in out and "flags: qr rd;" in out


def test_mixed_case_question_echoed(client: Host) -> None:
    out = dig(client, "+noedns", "_CiscoProv-HTTPS._TLS.Staging.TEST", "SRV")
    assert section(out, "QUESTION") == [";_CiscoProv-HTTPS._TLS.Staging.TEST. IN SRV"]
    assert section(out, "ANSWER")[0].startswith("_CiscoProv-HTTPS._TLS.Staging.TEST. 300 IN SRV 10 0 443 ")


def test_small_edns_buffer_truncates_and_dig_retries_over_tcp(client: Host) -> None:
    truncated = dig(client, "+bufsize=512", "+ignore", "big.staging.test", "TXT")
    assert "flags: qr aa tc rd;" in truncated and "ANSWER: 0" in truncated
    assert "udp: 1232" in truncated  # our OPT, echoed
    retried = dig(client, "+bufsize=512", "big.staging.test", "TXT")
    assert "Truncated, retrying in TCP mode" in retried
    assert sorted(r.split(" IN TXT ")[1].strip('"') for r in section(retried, "ANSWER")) == sorted(BIG_TXT)


def test_kdig_agrees(client: Host) -> None:
    out = client.run(["kdig", f"@{SERVER}", "+tcp", HTTPS, "SRV"]).stdout
    assert "status: NOERROR" in out and "Flags: qr aa rd;" in out
    answers = [" ".join(line.split()) for line in out.splitlines() if "\tSRV\t" in line]
    assert answers == [f"{HTTPS}. 300 IN SRV 10 0 443 prov1.staging.test.",
                       f"{HTTPS}. 300 IN SRV 20 0 443 prov2.staging.test."]


def test_malformed_packets_then_still_answering(client: Host) -> None:
    script = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1)\n"
        f"s.sendto(b'\\x01\\x02', ('{SERVER}',53))\n"
        f"s.sendto(b'\\xab\\xcd\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x3fbad', ('{SERVER}',53))\n"
        "r=s.recvfrom(512)[0]; sys.stdout.write(r[:4].hex())\n"
    )
    out = client.run([sys.executable, "-c", script]).stdout
    assert out == "abcd8101"  # our ID back, QR, RD copied, rcode FORMERR
    assert "status: NOERROR" in dig(client, HTTPS, "SRV")


def test_leased_phone_is_resolvable(env: DnsLab, client: Host) -> None:
    phone = env.lan.add_client(name="phone")
    phone.run(["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", "/bin/true",
               "-V", "CP-8841-3PCC", "-x", "hostname:SEP00562B043615"], timeout=20)
    acks = [e for e in env.daemon.wait_for("dhcp.ack", timeout=10) if e.get("chaddr") == phone.mac("eth0")]
    address = str(acks[-1]["address"])
    assert dig(client, "+short", "SEP00562B043615.staging.test", "A").split() == [address]
    reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
    assert dig(client, "+short", reverse, "PTR").split() == ["sep00562b043615.staging.test."]


# --- what RFCs 6891, 7873 and 8945 say MUST happen (issue 10 item 2) ----------------------------------


def test_header_only_cookie_query_gets_formerr_with_our_opt(client: Host) -> None:
    out = dig(client, "+cookie", "+header-only")
    assert "status: FORMERR" in out
    assert "OPT PSEUDOSECTION" in out and "udp: 1232" in out  # RFC 6891 section 7


def test_tsig_signed_query_is_notauth_badkey(client: Host) -> None:
    """We hold no keys (RFC 8945 section 5.2.2): NOTAUTH and an unsigned TSIG with error BADKEY, for a
    name never asked and for one whose answer is prepared."""
    dig(client, HTTPS, "SRV")
    for name in ("nothing-yet.staging.test", HTTPS):
        out = client.run(["dig", f"@{SERVER}", "+time=2", "+tries=1", "-y", "hmac-sha256:name:c2VjcmV0c2VjcmV0",
                          name, "SRV"], check=False).stdout
        assert "status: NOTAUTH" in out and "ANSWER: 0" in out, out
        assert "BADKEY" in out, out


def test_malformed_cookie_is_formerr_cold_and_warm(client: Host) -> None:
    """kdig sends a 2-octet COOKIE (RFC 7873 section 5.2.2: FORMERR), for a name never asked and for one
    whose answer is prepared."""
    for name in ("www.staging.test", "prov1.staging.test"):
        dig(client, name, "A")
    for name in ("prov2.staging.test", "www.staging.test"):
        out = client.run(["kdig", f"@{SERVER}", "+ednsopt=10:0102", name, "A"], check=False).stdout
        assert "status: FORMERR" in out, out


def test_opt_options_overrunning_rdata_are_formerr_cold_and_warm(client: Host) -> None:
    script = (
        "import socket,struct,sys\n"
        "q=b'\\x00\\x07\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x01'"
        "+b''.join(bytes([len(l)])+l.encode() for l in 'cold.staging.test'.split('.'))+b'\\x00\\x00\\x01\\x00\\x01'\n"
        "opt=b'\\x00\\x00\\x29\\x04\\xd0\\x00\\x00\\x00\\x00\\x00\\x07\\x00\\x0a\\x00\\x08abc'\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2)\n"
        f"s.sendto(q+opt,('{SERVER}',53)); sys.stdout.write(str(s.recvfrom(4096)[0][3]&15))\n"
    )
    for _ in range(2):  # the second after dig has had the name's answer prepared
        assert client.run([sys.executable, "-c", script]).stdout == "1"  # FORMERR
        assert "status: NXDOMAIN" in dig(client, "cold.staging.test", "A")
