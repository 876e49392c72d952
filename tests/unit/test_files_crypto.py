"""Profile encryption checked against the real `openssl enc` and RFC 8188's own examples."""

from __future__ import annotations

import base64
import gzip
import shutil
import subprocess

import pytest

from bootstrapd.files.crypto import (
    CryptoError,
    aes128gcm_decrypt,
    aes128gcm_encrypt,
    openssl_decrypt,
    openssl_encrypt,
)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
PROFILE = b'<flat-profile><Profile_Rule ua="na">https://prov.example.net/$MA.xml</Profile_Rule></flat-profile>\n'


def openssl_dec(data: bytes, key: str, md: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", md, "-k", key], input=data,
                          capture_output=True, timeout=30, check=False)


@needs_openssl
@pytest.mark.parametrize(("md", "plain"), [("sha256", PROFILE), ("md5", PROFILE), ("sha256", b""),
                                           ("sha256", b"x" * 16), ("sha256", gzip.compress(PROFILE, mtime=0))])
def test_openssl_decrypts_what_we_encrypt(md: str, plain: bytes) -> None:
    data = openssl_encrypt(plain, "s3cr3t-key", bytes(range(8)), md)
    assert data[:16] == b"Salted__" + bytes(range(8))
    r = openssl_dec(data, "s3cr3t-key", md)
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain


@needs_openssl
def test_openssl_refuses_a_wrong_key_or_digest() -> None:
    data = openssl_encrypt(PROFILE * 3, "right", b"saltsalt", "sha256")
    for key, md in (("wrong", "sha256"), ("right", "md5")):
        r = openssl_dec(data, key, md)
        assert r.returncode != 0 or r.stdout != PROFILE * 3


@needs_openssl
def test_we_decrypt_what_openssl_encrypts() -> None:
    r = subprocess.run(["openssl", "enc", "-aes-256-cbc", "-md", "sha256", "-k", "k3y", "-S", "0102030405060708"],
                       input=PROFILE, capture_output=True, timeout=30, check=True)
    ours = openssl_encrypt(PROFILE, "k3y", bytes.fromhex("0102030405060708"))
    assert ours[16:] == r.stdout[-len(ours) + 16:]  # OpenSSL 3 leaves the header out when -S is given
    assert openssl_decrypt(ours, "k3y") == PROFILE
    with pytest.raises(CryptoError):
        openssl_decrypt(ours, "other")


def b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# RFC 8188 section 3.1: one record, rs 4096, no key id.
RFC_3_1 = ("yqdlZ-tYemfogSmv7Ws5PQ", "I1BsxtFttlv3u_Oo94xnmwAAEAAA-NAVub2qFgBEuQKRapoZu-IxkIva3MEB1PD-ly8Thjg")
# RFC 8188 section 3.2: rs 25, key id "a1", two records with padding.
RFC_3_2 = ("BO3ZVPxUlnLORbVGMpbT1Q",
           "uNCkWiNYzKTnBN9ji3-qWAAAABkCYTHOG8chz_gnvgOqdGYovxyjuqRyJFjEDyoF1Fvkj6hQPdPHI51OEUKEpgz3SsLWIqS_uA")


def test_rfc8188_examples_decrypt() -> None:
    assert aes128gcm_decrypt(b64(RFC_3_1[1]), b64(RFC_3_1[0])) == b"I am the walrus"
    assert aes128gcm_decrypt(b64(RFC_3_2[1]), b64(RFC_3_2[0])) == b"I am the walrus"


def test_rfc8188_example_3_1_is_what_we_encrypt() -> None:
    encoded = b64(RFC_3_1[1])
    assert aes128gcm_encrypt(b"I am the walrus", b64(RFC_3_1[0]), encoded[:16]) == encoded


@pytest.mark.parametrize("size", [0, 1, 4078, 4079, 4080, 10_000])
def test_aes128gcm_round_trips_across_record_boundaries(size: int) -> None:
    plain = bytes(i % 251 for i in range(size))
    data = aes128gcm_encrypt(plain, b"ikm-of-the-phone", b"S" * 16)
    records = -(-(len(data) - 21) // 4096)
    assert records == max(1, -(-size // 4079))
    assert aes128gcm_decrypt(data, b"ikm-of-the-phone") == plain
    with pytest.raises(CryptoError):
        aes128gcm_decrypt(data, b"another-ikm")


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(CryptoError):
        openssl_encrypt(b"x", "k", b"short")
    with pytest.raises(CryptoError):
        openssl_encrypt(b"x", "", b"saltsalt")
    with pytest.raises(CryptoError):
        aes128gcm_encrypt(b"x", b"k", b"short")
    with pytest.raises(CryptoError):
        aes128gcm_encrypt(b"x", b"", b"S" * 16)
