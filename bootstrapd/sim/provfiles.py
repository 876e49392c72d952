"""What the lab provisioning server answers (sim/provserver.py), beyond the factory-default names.

- With a `Bootstrap` (`--bootstrap JSON`), the first profiles (model and MAC names) become a bootstrap
  profile: `Profile_Rule` to the "remote" server, `Syslog_Server`, our `Log_*` templates, an error-retry
  delay, an `Upgrade_Rule`, optionally gzipped and then encrypted (`openssl enc -aes-256-cbc`, by the real
  openssl binary, so the phone's decryption is checked against an independent implementation).
- `/remote/<anything>` is the remote provider's per-phone profile: a small `<flat-profile>` whose
  `Profile_Rule` names the URL it was fetched from, so a phone's resync chain ends there; encrypted with
  `remote_key` (CBC, in process by bootstrapd.files.crypto, itself checked against the openssl binary in
  tests/unit/test_files_crypto.py: one openssl run per phone cost a boot storm ~10 ms each, serialised)
  or, over HTTP, RFC 8188 `aes128gcm` with `remote_ikm`.
- `*.loads` is a firmware load: a stub of FIRMWARE_SIZE bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
import subprocess
import threading
from dataclasses import dataclass, fields
from typing import Any
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootstrapd.files import crypto as files_crypto
from bootstrapd.sim.phonelog import OUR_TEMPLATES
from bootstrapd.sim.profile import compress

FIRMWARE_SIZE = 64 << 10
_REMOTE = re.compile(r"^/?remote/[\w.$()-]{1,128}$")
_LOADS = re.compile(r"^/?[\w./-]{1,200}\.loads$", re.IGNORECASE)


@dataclass(frozen=True)
class Bootstrap:
    """What the first profile says; every field optional (JSON keys of the same names)."""

    profile_rule: str | None = None  # e.g. "--key K2 http://198.18.0.10/remote/$MA.xml"
    syslog_server: str | None = None  # host[:port]
    our_templates: bool = True  # set the six Log_* templates to bootstrapd's form (else firmware defaults)
    retry_delay: float | None = None  # Resync_Error_Retry_Delay
    upgrade_rule: str | None = None
    key: str | None = None  # encrypt the first profile with this key (the phone's option 160 --key, or --key)
    md: str = "sha256"  # EVP_BytesToKey digest: sha256, or md5 for old firmware
    gzip: bool = False  # gzip before encryption
    remote_key: str | None = None  # encrypt /remote/ profiles (AES-256-CBC)
    remote_ikm: str | None = None  # /remote/ over HTTP as Content-Encoding: aes128gcm (sets IKM_HTTP_Encrypt_Content)
    extra: dict[str, str] | None = None  # any other parameters, e.g. {"Profile_Rule_B": "..."}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Bootstrap:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown bootstrap keys: {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass(frozen=True)
class Answer:
    body: bytes
    encoding: str | None = None  # Content-Encoding
    kind: str = "profile"  # profile | remote | firmware


def _element(name: str, value: object) -> str:
    return f'  <{name} ua="na">{escape(str(value))}</{name}>\n'


def bootstrap_profile(b: Bootstrap) -> bytes:
    params: dict[str, object] = {"Profile_Rule": b.profile_rule, "Syslog_Server": b.syslog_server,
                                 "Resync_Error_Retry_Delay": b.retry_delay, "Upgrade_Rule": b.upgrade_rule,
                                 "IKM_HTTP_Encrypt_Content": b.remote_ikm, "Resync_Periodic": 3600}
    if b.our_templates:
        params |= OUR_TEMPLATES
    params |= b.extra or {}
    body = "".join(_element(k, v) for k, v in params.items() if v is not None)
    return f"<flat-profile>\n  <!-- bootstrap profile, bootstrapd lab -->\n{body}</flat-profile>\n".encode()


def remote_profile(self_rule: str, path: str) -> bytes:
    name = path.rsplit("/", 1)[-1].split(".")[0].upper()[:12]
    return (f"<flat-profile>\n{_element('Profile_Rule', self_rule)}{_element('Station_Name', 'SEP' + name)}"
            f"{_element('Resync_Periodic', 3600)}</flat-profile>\n").encode()


def openssl_encrypt(plain: bytes, key: str, md: str = "sha256") -> bytes:
    """`openssl enc -aes-256-cbc -md MD -k KEY` by the openssl binary (salted, EVP_BytesToKey)."""
    done = subprocess.run(["openssl", "enc", "-aes-256-cbc", "-md", md, "-pass", "env:BOOTSTRAPD_LAB_KEY", "-salt"],
                          input=plain, capture_output=True, timeout=10, check=True,
                          env={**os.environ, "BOOTSTRAPD_LAB_KEY": key})
    return done.stdout


def aes128gcm_encrypt(plain: bytes, ikm: bytes, salt: bytes | None = None, rs: int = 4096) -> bytes:
    """RFC 8188 content coding (header, then records of `rs` bytes with delimiters 1 and 2 for the last)."""
    salt = salt or os.urandom(16)
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    cek = hmac.new(prk, b"Content-Encoding: aes128gcm\x00\x01", hashlib.sha256).digest()[:16]
    nonce = int.from_bytes(hmac.new(prk, b"Content-Encoding: nonce\x00\x01", hashlib.sha256).digest()[:12], "big")
    size = rs - 17
    pieces = [plain[i:i + size] for i in range(0, len(plain), size)] or [b""]
    gcm = AESGCM(cek)
    records = [gcm.encrypt((nonce ^ i).to_bytes(12, "big"), p + (b"\x02" if i == len(pieces) - 1 else b"\x01"),
                           None) for i, p in enumerate(pieces)]
    return salt + struct.pack("!IB", rs, 0) + b"".join(records)


def _quoted(value: str) -> str:
    return f'"{value}"' if any(c.isspace() for c in value) else value


class Catalog:
    """The answers of the bootstrap mode (None: not ours, the default names apply)."""

    def __init__(self, bootstrap: Bootstrap | None) -> None:
        self.bootstrap = bootstrap
        self._cache: dict[tuple[bytes, str, str], bytes] = {}
        self._lock = threading.Lock()

    def _encrypt(self, plain: bytes, key: str, md: str) -> bytes:
        with self._lock:  # a boot storm asks for the same few files: one openssl run each
            found = self._cache.get((plain, key, md))
            if found is None:
                found = self._cache[(plain, key, md)] = openssl_encrypt(plain, key, md)
            return found

    def _seal(self, plain: bytes, key: str | None) -> bytes:
        b = self.bootstrap
        if b is not None and b.gzip:
            plain = compress(plain)
        return self._encrypt(plain, key, b.md if b else "sha256") if key else plain

    def first(self, default: bytes | None) -> bytes | None:
        """The first profile: the bootstrap profile instead of a default one, when configured."""
        if default is None or self.bootstrap is None:
            return default
        return self._seal(bootstrap_profile(self.bootstrap), self.bootstrap.key)

    def other(self, path: str, self_url: str, http: bool) -> Answer | None:
        """/remote/ profiles and firmware loads."""
        path = path.split("?", 1)[0]
        if _LOADS.match(path):
            return Answer(b"\0" * FIRMWARE_SIZE, kind="firmware")
        if not _REMOTE.match(path):
            return None
        b = self.bootstrap or Bootstrap()
        rule = f"--key {_quoted(b.remote_key)} {self_url}" if b.remote_key else self_url
        body = remote_profile(rule, path)
        if b.gzip:
            body = compress(body)
        if b.remote_key:  # one per phone: too many for the openssl binary's cached runs
            body = files_crypto.openssl_encrypt(body, b.remote_key, os.urandom(8), b.md)
        if http and b.remote_ikm:
            return Answer(aes128gcm_encrypt(body, b.remote_ikm.encode("utf-8")), "aes128gcm", "remote")
        return Answer(body, kind="remote")
