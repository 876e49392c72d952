"""A simulated Cisco MPP phone: its identity (MAC, model, firmware) and what it derives from it.

The facts come from mpp-bootstrap.md: option 60 is the model string, the User-Agent is
`Cisco-<PN>/<firmware> (<12 hex>)`, per-device files are keyed on `$MA`, and the factory-default profile
rule differs by series (the 6800 guide says `$PN.cfg`, Cisco's parameter reference `/$PSN.xml`).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

# OUIs registered to Cisco Systems (IEEE registry; 00:56:2b appears in Cisco's own examples).
CISCO_OUIS = ("00:56:2b", "2c:31:24", "70:10:5c", "a4:53:0e", "00:1e:7a", "f8:7b:20")
MODELS = ("CP-6841-3PCC", "CP-6851-3PCC", "CP-7821-3PCC", "CP-7832-3PCC", "CP-7841-3PCC", "CP-7861-3PCC",
          "CP-8811-3PCC", "CP-8841-3PCC", "CP-8851-3PCC", "CP-8865-3PCC")
FIRMWARE = "12.0.1"
_MODEL = re.compile(r"^CP-(\d{4}[A-Z]?)-3PCC$")


@dataclass(frozen=True)
class Phone:
    """One phone. `mac` is "aa:bb:cc:dd:ee:ff" (lower case); `model` is the product name ($PN)."""

    mac: str
    model: str
    firmware: str = FIRMWARE
    serial: str = ""
    username: str | None = None  # HTTP credentials the phone holds (profile rule --uid/--pwd override them)
    password: str | None = None
    key: str | None = None  # a key it holds already: IKM_HTTP_Encrypt_Content until a profile sets one
    syslog_header: str = "rfc3164"  # "rfc3164" or "bare": how its syslog datagrams look (firmware-dependent)
    # Misbehaviour for tests and demos (assign_quirks): never comes back after its first profile; asks the
    # remote server to 404 its first resync (lab servers honour QUIRK_HEADER); decrypts with a wrong key.
    silent: bool = False
    fail_resync: bool = False
    wrong_key: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", self.mac):
            raise ValueError(f"phone MAC must be lower-case aa:bb:cc:dd:ee:ff, not {self.mac!r}")
        if not _MODEL.match(self.model):
            raise ValueError(f"phone model must look like CP-8841-3PCC, not {self.model!r}")

    @property
    def ma(self) -> str:
        """$MA: lower-case hex, no separators (the key of per-device files)."""
        return self.mac.replace(":", "")

    @property
    def psn(self) -> str:
        """$PSN, the product series: `8841-3PCC` (the name production provisioning servers use)."""
        return self.model.removeprefix("CP-")

    @property
    def chaddr(self) -> bytes:
        return bytes.fromhex(self.ma)

    @property
    def user_agent(self) -> str:
        return f"Cisco-{self.model}/{self.firmware} ({self.ma})"

    @property
    def default_rule(self) -> str:
        """Factory-default Profile_Rule: `$PN.cfg` on the 6800 series (its admin guide), else `/$PSN.xml`."""
        return "$PN.cfg" if self.model.startswith("CP-68") else "/$PSN.xml"

    def decryption_key(self, key: str, wrong: bool) -> str:
        """The key the phone actually uses for `key`: something else where it holds a wrong one."""
        return f"wrong-{key}" if wrong else key

    def macros(self, ip: str = "") -> dict[str, str]:
        """Values of the profile-rule macros (mpp-bootstrap.md section 4)."""
        return {"MA": self.ma, "MAU": self.ma.upper(), "MAC": self.mac, "PN": self.model, "PSN": self.psn,
                "SN": self.serial or self.ma.upper(), "SWVER": self.firmware, "HWVER": "1", "IP": ip}


def make_phones(count: int, seed: int = 0, models: Sequence[str] = MODELS, ouis: Sequence[str] = CISCO_OUIS,
                start: int = 0, username: str | None = None, password: str | None = None,
                key: str | None = None) -> list[Phone]:
    """`count` phones with distinct MACs: model and OUI cycle through the lists, the NIC part is seeded."""
    if not models or not ouis:
        raise ValueError("need at least one model and one OUI")
    rng = random.Random(seed)
    nic_base = rng.randrange(0x1000) << 12  # room for 4096 phones per seed without a collision
    phones = []
    for i in range(start, start + count):
        nic = (nic_base + i) & 0xFFFFFF
        mac = f"{ouis[i % len(ouis)]}:{nic >> 16:02x}:{(nic >> 8) & 0xFF:02x}:{nic & 0xFF:02x}"
        model = models[i % len(models)]
        header = "rfc3164" if i % 2 == 0 else "bare"  # both forms on every floor
        phones.append(Phone(mac, model, serial=f"FCH{nic:08X}", username=username, password=password, key=key,
                            syslog_header=header))
    return phones


def assign_quirks(phones: Sequence[Phone], seed: int, *, silent: int = 0, fail_resync: int = 0,
                  wrong_key: int = 0) -> list[Phone]:
    """Give `silent`, `fail_resync` and `wrong_key` distinct phones (chosen by `seed`) that misbehaviour."""
    wanted = silent + fail_resync + wrong_key
    if min(silent, fail_resync, wrong_key) < 0 or wanted > len(phones):
        raise ValueError(f"{wanted} misbehaving phones asked for, {len(phones)} phones")
    chosen = random.Random(f"{seed}:quirks").sample(range(len(phones)), wanted)
    out = list(phones)
    for n, i in enumerate(chosen):
        out[i] = dataclasses.replace(out[i], silent=n < silent, fail_resync=silent <= n < silent + fail_resync,
                                     wrong_key=n >= silent + fail_resync)
    return out
