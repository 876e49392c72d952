"""The phone's decryption (mpp-bootstrap.md section 6) against independent encoders: the real `openssl enc`
binary for AES-256-CBC (SHA-256 and MD5 key derivation) and RFC 8188's own examples for aes128gcm."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bootstrapd.sim.decrypt import DecryptError, aes128gcm_decrypt, openssl_decrypt
from bootstrapd.sim.discovery import ProfileUrl
from bootstrapd.sim.fetch import Fetched
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.resync import open_profile

PLAIN = b'<flat-profile>\n  <Profile_Rule ua="na">https://prov.example.net/$MA.xml</Profile_Rule>\n</flat-profile>\n'
KEY = "s3cret key with spaces & symbols $MA"

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")


def openssl(plain: bytes, key: str, md: str) -> bytes:
    return subprocess.run(["openssl", "enc", "-aes-256-cbc", "-md", md, "-k", key], input=plain,
                          capture_output=True, check=True, timeout=10).stdout


@needs_openssl
@pytest.mark.parametrize("md", ["sha256", "md5"])
def test_openssl_enc_output_decrypts(md: str) -> None:
    data = openssl(PLAIN, KEY, md)
    assert data.startswith(b"Salted__")
    assert openssl_decrypt(data, KEY) == PLAIN  # SHA-256 first, then MD5, as a phone that does not know
    assert openssl_decrypt(data, KEY, (md,)) == PLAIN


@needs_openssl
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096])
def test_every_padding_length(size: int) -> None:
    plain = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert openssl_decrypt(openssl(plain, "k", "sha256"), "k") == plain


@needs_openssl
def test_wrong_key_and_wrong_digest_fail() -> None:
    sha = openssl(PLAIN * 4, KEY, "sha256")
    # A wrong key or digest passes CBC's padding check 1 time in 256 (openssl draws the salt): then the
    # bytes are garbage, never the profile; the callers' XML parse turns that into a failure.
    for key, digests in ((KEY + "x", ("sha256", "md5")), (KEY, ("md5",))):  # old firmware cannot read SHA-256
        with contextlib.suppress(DecryptError):
            assert openssl_decrypt(sha, key, digests) != PLAIN * 4


@pytest.mark.parametrize("data", [b"", b"<flat-profile/>", b"Salted__12345678", b"Salted__12345678" + b"x" * 17])
def test_not_an_openssl_file(data: bytes) -> None:
    with pytest.raises(DecryptError, match="not an openssl"):
        openssl_decrypt(data, KEY)


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 8188 section 3.1 (one record, rs 4096) and 3.2 (key id "a1", rs 25: two records).
RFC8188_3_1 = ("I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg", "yqdlZ-tYemfogSmv7Ws5PQ")
RFC8188_3_2 = ("uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA",
               "BO3ZVPxUlnLORbVGMpbT1Q")


@pytest.mark.parametrize(("encoded", "ikm"), [RFC8188_3_1, RFC8188_3_2])
def test_rfc8188_examples(encoded: str, ikm: str) -> None:
    assert aes128gcm_decrypt(b64(encoded), b64(ikm)) == b"I am the walrus"


def test_rfc8188_wrong_key_truncated_or_altered() -> None:
    data, ikm = b64(RFC8188_3_2[0]), b64(RFC8188_3_2[1])
    with pytest.raises(DecryptError, match="does not authenticate"):
        aes128gcm_decrypt(data, b"wrong")
    with pytest.raises(DecryptError):
        aes128gcm_decrypt(data[:-25], ikm)  # the last record dropped: the first one is not marked last
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(DecryptError, match="does not authenticate"):
        aes128gcm_decrypt(flipped, ikm)
    with pytest.raises(DecryptError, match="header"):
        aes128gcm_decrypt(data[:20], ikm)
    with pytest.raises(DecryptError, match="record size"):
        aes128gcm_decrypt(data[:16] + b"\0\0\0\x05\0" + data[21:], ikm)


def cbc_encrypt(plain: bytes, key: str, salt: bytes, md: str) -> bytes:
    """openssl enc's format with a chosen salt (the openssl binary draws its own)."""
    material, block = b"", b""
    while len(material) < 48:
        block = hashlib.new(md, block + key.encode() + salt).digest()
        material += block
    padder = padding.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(material[:32]), modes.CBC(material[32:48])).encryptor()
    return b"Salted__" + salt + enc.update(padder.update(plain) + padder.finalize()) + enc.finalize()


def test_md5_profile_whose_sha256_decryption_happens_to_pad_correctly() -> None:
    """1 salt in ~256 makes the SHA-256 attempt on an MD5 file end in valid padding: the phone must still
    pick MD5, because only its plaintext is a profile."""
    for n in range(5000):
        data = cbc_encrypt(PLAIN, KEY, n.to_bytes(8, "big"), "md5")
        try:
            openssl_decrypt(data, KEY, ("sha256",))
        except DecryptError:
            continue
        break
    else:
        pytest.fail("no such salt in 5000")
    url = ProfileUrl("http", "prov", 80, "/x.cfg", key=KEY)
    params = open_profile(Fetched(True, str(url), "200", len(data), body=data), url, Phone("00:56:2b:04:36:15",
                          "CP-8841-3PCC"), None)
    assert params == {"Profile_Rule": "https://prov.example.net/$MA.xml"}
