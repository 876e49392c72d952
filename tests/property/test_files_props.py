"""File-service properties: any inventory text renders to well-formed XML holding that text; any name and
User-Agent resolve to a value (never an exception), and nothing outside the root is ever served."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrapd.config.model import Files, Profile
from bootstrapd.files.inventory import Inventory, Row
from bootstrapd.files.outcome import FileRequest, Miss, MissReason, Protocol, Rendered, Static
from bootstrapd.files.render import NOT_XML, Templates
from bootstrapd.files.resolve import FileResolver

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])
MAC = "00:56:2b:04:36:15"


def make(tmp_path: Path, label: str) -> FileResolver:
    (tmp_path / "srv").mkdir(exist_ok=True)
    (tmp_path / "srv" / "ok.txt").write_text("ok")
    tpl = tmp_path / "p.xml.j2"
    tpl.write_text('<flat-profile><L a="{{ label }}">{{ label }}</L><F>{{ device.firmware }}</F></flat-profile>')
    files = Files(root=str(tmp_path / "srv"), variables={},
                  profiles=(Profile(names=("$PSN.xml", "$MA.cfg"), template=str(tpl)),))
    row = Row(MAC, 2, columns={"label": label})
    return FileResolver(files, Inventory("inv.csv", (row,), {MAC: row}, ("label",)), {}.get, lambda n: b"s" * n)


@SETTINGS
@given(label=st.text(max_size=80))
def test_any_inventory_text_renders_well_formed_xml(tmp_path: Path, label: str) -> None:
    got = make(tmp_path, label).resolve(FileRequest("/00562b043615.cfg", Protocol.TFTP, IPv4Address("198.18.0.9")))
    assert isinstance(got, Rendered)
    got.body.decode("ascii")
    el = ET.fromstring(got.body).find("L")
    assert el is not None
    expected = NOT_XML.sub("", label)
    # XML normalises line ends in text and whitespace in attribute values (XML 1.0 sections 2.11, 3.3.3)
    assert (el.text or "") == expected.replace("\r\n", "\n").replace("\r", "\n")
    assert el.get("a") == expected.replace("\r\n", " ").translate({0x9: " ", 0xA: " ", 0xD: " "})


@SETTINGS
@given(name=st.text(max_size=60) | st.sampled_from(["../x", "/srv/ok.txt", "ok.txt", "..", "%2e%2e/x"]),
       ua=st.none() | st.text(max_size=120) | st.from_regex(r"Cisco-CP-78[0-9]{2}-3PCC/\S{0,8} \([0-9a-f:-]{10,20}\)"))
def test_any_name_and_user_agent_resolve_inside_the_root(tmp_path: Path, name: str, ua: str | None) -> None:
    r = make(tmp_path, "x")
    got = r.resolve(FileRequest(name, Protocol.HTTP, IPv4Address("198.18.0.9"), ua))
    assert isinstance(got, Rendered | Static | Miss)
    assert not (isinstance(got, Miss) and got.reason is MissReason.RENDER_FAILED), got.detail
    if isinstance(got, Static):
        assert os.path.realpath(got.path).startswith(os.path.realpath(tmp_path / "srv") + os.sep)
    if isinstance(got, Rendered):
        ET.fromstring(got.body)


def test_templates_are_compiled_once(tmp_path: Path) -> None:
    tpl = tmp_path / "a.j2"
    tpl.write_text("<a/>")
    t = Templates()
    assert t.load(str(tpl)) is t.load(str(tpl))
