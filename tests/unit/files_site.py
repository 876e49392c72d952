"""A site directory with a `files:` section, built in tmp_path, for the file service's unit tests."""

from __future__ import annotations

from pathlib import Path

SITE_HEAD = """\
site: t
listen: {interfaces: [stg0], address: 198.18.0.1}
domain: stg.test
dhcp: {subnets: [{prefix: 198.18.0.0/24, pools: ["198.18.0.100-198.18.0.200"]}]}
"""

BOOTSTRAP = """\
<flat-profile>
  <Profile_Rule ua="na">--key {{ key }} {{ remote_profile_rule }}</Profile_Rule>
  <Syslog_Server ua="na">{{ syslog }}</Syslog_Server>
  <Station_Display_Name ua="na">{{ label }}</Station_Display_Name>
  <Device ua="na">{{ device.mac }}|{{ device.MA }}|{{ device.MAU }}|{{ device.PN }}|{{ device.PSN }}|{{ device.model }}|{{ device.address }}|{{ device.class }}|{{ device.firmware }}|{{ device.serial }}</Device>
</flat-profile>
"""

INVENTORY = """\
mac,serial,key,label
00:56:2b:04:36:15,FCH2301ABCD,k3y-one,Reception
00-56-2B-04-36-16,FCH2301ABCE,k3y-two,"<&""']]> hostile"
"""

FILES = """\
files:
  root: srv
  tftp: {}
  http: {port: 8080}
  inventory: inventory.csv
  variables:
    remote_profile_rule: https://prov.stg.test/$MA.xml
    syslog: 198.18.0.1
  profiles:
    - names: ["$PN.cfg", "$PSN.xml"]
      template: templates/bootstrap.xml.j2
    - names: ["$MA.cfg", "Cisco/$MA.cfg"]
      template: templates/bootstrap.xml.j2
      devices: inventory
      gzip: true
      encrypt: aes-256-cbc
    - names: ["$MA.xml"]
      template: templates/bootstrap.xml.j2
      devices: inventory
      encrypt: aes128gcm
"""


def make_site(tmp_path: Path, files: str = FILES, inventory: str | None = INVENTORY,
              templates: dict[str, str] | None = None, statics: dict[str, bytes] | None = None) -> Path:
    """The site file's path; `templates` and `statics` map names (under templates/, srv/) to contents."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "srv").mkdir(exist_ok=True)
    for name, text in (templates if templates is not None else {"bootstrap.xml.j2": BOOTSTRAP}).items():
        (tmp_path / "templates" / name).write_text(text)
    for name, data in (statics or {}).items():
        p = tmp_path / "srv" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if inventory is not None:
        (tmp_path / "inventory.csv").write_text(inventory)
    site = tmp_path / "site.yaml"
    site.write_text(SITE_HEAD + files)
    return site
