"""The file resolver: profiles rendered per device, static files through the jail, misses with reasons."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from files_site import BOOTSTRAP, FILES, make_site

from bootstrapd.config import load_site
from bootstrapd.files.crypto import aes128gcm_decrypt
from bootstrapd.files.identify import LeaseInfo
from bootstrapd.files.outcome import FileRequest, IdentifiedBy, Miss, MissReason, Protocol, Rendered, Static
from bootstrapd.files.resolve import FileResolver, load_inventory

CLIENT = IPv4Address("198.18.0.120")
MAC1, MAC2, STRANGER = "00:56:2b:04:36:15", "00:56:2b:04:36:16", "00:56:2b:99:99:99"
UA1 = "Cisco-CP-7841-3PCC/12.0.1 (00562b043615)"


def salt(n: int) -> bytes:
    return b"\x5a" * n


def resolver(site: Path, leases: dict[IPv4Address, LeaseInfo] | None = None) -> FileResolver:
    files = load_site(str(site)).files
    assert files is not None
    return FileResolver(files, load_inventory(files), (leases or {}).get, random_bytes=salt)


def get(r: FileResolver, name: str, ua: str | None = None, proto: Protocol = Protocol.HTTP):
    return r.resolve(FileRequest(name, proto, CLIENT, ua))


def fields(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)  # well-formed XML, or this raises
    return {el.tag: el.text or "" for el in root}


@pytest.mark.parametrize("name", ["/CP-7841-3PCC.cfg", "CP-7841-3PCC.cfg", "/7841-3PCC.xml", "/cp-7841-3pcc.XML",
                                  "/CP-7841-3PCC.xml"])
def test_every_spelling_of_the_first_file_gets_the_bootstrap_profile(tmp_path: Path, name: str) -> None:
    got = get(resolver(make_site(tmp_path)), name, UA1, Protocol.TFTP)
    assert isinstance(got, Rendered)
    assert got.profile == "templates/bootstrap.xml.j2" and got.content_encoding is None
    f = fields(got.body)
    assert f["Profile_Rule"] == "--key k3y-one https://prov.stg.test/$MA.xml"  # $MA left for the phone
    assert f["Device"] == (f"{MAC1}|00562b043615|00562B043615|CP-7841-3PCC|7841-3PCC|7841|198.18.0.120||"
                           "12.0.1|FCH2301ABCD")
    assert got.device.identified_by is IdentifiedBy.USER_AGENT


def test_an_unknown_device_gets_empty_inventory_fields_where_devices_any(tmp_path: Path) -> None:
    got = get(resolver(make_site(tmp_path)), "/CP-8841-3PCC.cfg", None, Protocol.TFTP)
    assert isinstance(got, Rendered)
    f = fields(got.body)
    assert f["Profile_Rule"] == "--key  https://prov.stg.test/$MA.xml"
    assert f["Station_Display_Name"] == ""
    assert f["Device"] == "|||CP-8841-3PCC|8841-3PCC|8841|198.18.0.120|||"
    assert got.device.identified_by is IdentifiedBy.NONE


def test_the_lease_identifies_a_tftp_client_and_gives_its_class(tmp_path: Path) -> None:
    r = resolver(make_site(tmp_path), {CLIENT: LeaseInfo(MAC1, "CP-7841-3PCC", "mpp")})
    got = get(r, "/7841-3PCC.xml", None, Protocol.TFTP)
    assert isinstance(got, Rendered)
    assert fields(got.body)["Device"].split("|")[0] == MAC1
    assert fields(got.body)["Device"].split("|")[7] == "mpp"
    assert got.device.identified_by is IdentifiedBy.LEASE


def test_hostile_inventory_fields_stay_well_formed_xml(tmp_path: Path) -> None:
    got = get(resolver(make_site(tmp_path)), "/7841-3PCC.xml", "Cisco-CP-7841-3PCC/12.0.1 (00562b043616)")
    assert isinstance(got, Rendered)
    assert fields(got.body)["Station_Display_Name"] == "<&\"']]> hostile"
    assert b"<&" not in got.body


def test_non_ascii_becomes_character_references(tmp_path: Path) -> None:
    inv = "mac,serial,key,label\n00562b043615,S1,k,Caf\u00e9 \u2603\n"
    got = get(resolver(make_site(tmp_path, inventory=inv)), "/7841-3PCC.xml", UA1)
    assert isinstance(got, Rendered)
    got.body.decode("ascii")
    assert fields(got.body)["Station_Display_Name"] == "Caf\u00e9 \u2603"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
@pytest.mark.parametrize("name", ["/00562b043615.cfg", "/Cisco/00562B043615.cfg", "cisco//00562b043615.cfg"])
def test_per_mac_profile_is_gzipped_then_encrypted_with_the_rows_key(tmp_path: Path, name: str) -> None:
    got = get(resolver(make_site(tmp_path)), name, None, Protocol.TFTP)
    assert isinstance(got, Rendered) and got.body.startswith(b"Salted__" + salt(8))
    assert got.device.identified_by is IdentifiedBy.PATH
    dec = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-k", "k3y-one"],
                         input=got.body, capture_output=True, timeout=30, check=True).stdout
    assert fields(gzip.decompress(dec))["Device"].startswith(MAC1 + "|")


def test_aes128gcm_profile_carries_its_content_encoding(tmp_path: Path) -> None:
    got = get(resolver(make_site(tmp_path)), "/00562b043616.xml")
    assert isinstance(got, Rendered) and got.content_encoding == "aes128gcm"
    assert fields(aes128gcm_decrypt(got.body, b"k3y-two"))["Device"].startswith(MAC2 + "|")


def test_devices_inventory_refuses_an_unknown_device(tmp_path: Path) -> None:
    got = get(resolver(make_site(tmp_path)), "/00562b999999.cfg", UA1)
    assert isinstance(got, Miss) and got.reason is MissReason.NOT_IN_INVENTORY
    assert got.device.mac == STRANGER  # the path's MAC wins over the User-Agent's
    assert got.device.conflicts == (f"path={STRANGER}", f"user_agent={MAC1}")


def test_static_files_and_misses(tmp_path: Path) -> None:
    site = make_site(tmp_path, statics={"sip78xx.12-0-1MPP-1234.loads": b"L" * 1000, "fw/x.bin": b"x"})
    os.symlink("/etc/passwd", tmp_path / "srv" / "escape")
    (tmp_path / "srv" / "dir").mkdir()
    r = resolver(site)
    got = get(r, "/sip78xx.12-0-1MPP-1234.loads", UA1, Protocol.TFTP)
    assert isinstance(got, Static) and got.size == 1000
    assert got.path == str((tmp_path / "srv" / "sip78xx.12-0-1MPP-1234.loads").resolve())
    assert isinstance(get(r, "fw/x.bin"), Static)
    for name, reason in [("/nothing.xml", MissReason.NOT_FOUND), ("../inventory.csv", MissReason.TRAVERSAL),
                         ("fw/../../site.yaml", MissReason.TRAVERSAL), ("..\\site.yaml", MissReason.TRAVERSAL),
                         ("escape", MissReason.TRAVERSAL), ("dir", MissReason.NOT_REGULAR),
                         ("a\x01b", MissReason.BAD_NAME), ("", MissReason.BAD_NAME),
                         ("/CP-7841-3PCC.cfg/..", MissReason.TRAVERSAL)]:
        got = get(r, name, UA1)
        assert isinstance(got, Miss) and got.reason is reason, name
        assert got.device.mac == MAC1  # misses still say who asked


def test_a_profile_name_wins_over_a_static_file_of_that_name(tmp_path: Path) -> None:
    r = resolver(make_site(tmp_path, statics={"CP-7841-3PCC.cfg": b"static"}))
    assert isinstance(get(r, "CP-7841-3PCC.cfg"), Rendered)


def test_first_matching_profile_wins(tmp_path: Path) -> None:
    files = FILES.replace('["$MA.xml"]', '["$MA.xml", "$MA.cfg"]')
    got = get(resolver(make_site(tmp_path, files=files)), "/00562b043615.cfg")
    assert isinstance(got, Rendered) and got.body.startswith(b"Salted__")  # profile [1], not [2]


def test_a_render_failure_is_a_miss_not_an_exception(tmp_path: Path) -> None:
    files = load_site(str(make_site(tmp_path))).files  # checked with the good template...
    assert files is not None
    bad = BOOTSTRAP.replace("{{ label }}", "{{ label.missing_attribute.deeper }}")
    (tmp_path / "templates" / "bootstrap.xml.j2").write_text(bad)  # ...then changed behind check's back
    r = FileResolver.from_config(files, {}.get, random_bytes=salt)
    got = get(r, "/7841-3PCC.xml", UA1)
    assert isinstance(got, Miss) and got.reason is MissReason.RENDER_FAILED
    assert "templates/bootstrap.xml.j2: UndefinedError" in got.detail


def test_renders_are_cached_but_salts_are_fresh(tmp_path: Path) -> None:
    files = load_site(str(make_site(tmp_path))).files
    assert files is not None
    draws = iter(range(1, 100))
    r = FileResolver(files, load_inventory(files), {}.get, random_bytes=lambda n: bytes([next(draws)]) * n)
    a, b = get(r, "/00562b043615.cfg"), get(r, "/00562b043615.cfg")
    assert isinstance(a, Rendered) and isinstance(b, Rendered)
    assert a.body[8:16] != b.body[8:16]  # a new salt per response
    (tmp_path / "templates" / "bootstrap.xml.j2").write_text("<changed/>")
    c = get(r, "/7841-3PCC.xml")
    assert isinstance(c, Rendered) and b"<flat-profile>" in c.body  # loaded once: a reload builds a new one


def test_a_template_that_does_not_compile_fails_the_build_not_a_request(tmp_path: Path) -> None:
    from bootstrapd.files.resolve import FilesError

    files = load_site(str(make_site(tmp_path))).files
    assert files is not None
    (tmp_path / "templates" / "bootstrap.xml.j2").write_text("{% if %}")
    with pytest.raises(FilesError, match=r"^files.profiles\[0\]: "):
        FileResolver.from_config(files, {}.get)
