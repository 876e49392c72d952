"""Decrypting a profile as a phone does (mpp-bootstrap.md section 6), written for the simulator on its own.

Two formats:
- `openssl enc -aes-256-cbc -k KEY`: `Salted__`, an 8-byte salt, AES-256-CBC with PKCS#7 padding; key and
  IV from EVP_BytesToKey (one round) over SHA-256 (new firmware) or MD5 (old firmware). A phone that does
  not know which tries SHA-256 first, then MD5.
- RFC 8188 `Content-Encoding: aes128gcm`: a header (salt, record size, key id), then AES-128-GCM records;
  key and nonce from HKDF-SHA256 over the input keying material (the phone's `IKM_HTTP_Encrypt_Content`,
  as the UTF-8 bytes of the key text).

Any failure is a `DecryptError`: the phone reports it as `decryption failed` (class C).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALTED = b"Salted__"  # openssl enc's magic, then 8 bytes of salt
DIGESTS = ("sha256", "md5")  # what a phone tries, in order, when its firmware does not say
MAX_RECORDS = 4096  # RFC 8188 records per body; a profile needs one


class DecryptError(ValueError):
    """The bytes do not decrypt with this key (wrong key, wrong digest, truncated or altered data)."""


def is_openssl(data: bytes) -> bool:
    return data.startswith(SALTED)


def _bytes_to_key(secret: bytes, salt: bytes, digest: str) -> tuple[bytes, bytes]:
    """EVP_BytesToKey, count 1: D1 = H(secret+salt), Di = H(D(i-1)+secret+salt); 32 key + 16 IV bytes."""
    material, block = b"", b""
    while len(material) < 48:
        block = hashlib.new(digest, block + secret + salt).digest()
        material += block
    return material[:32], material[32:48]


def _unpad(block: bytes) -> bytes:
    """PKCS#7: the last byte n (1..16) and n copies of it; anything else means the key was wrong."""
    n = block[-1] if block else 0
    if not 1 <= n <= 16 or block[-n:] != bytes([n]) * n:
        raise DecryptError("bad padding")
    return block[:-n]


def openssl_decrypt(data: bytes, key: str, digests: Sequence[str] = DIGESTS) -> bytes:
    """The plaintext of an `openssl enc -aes-256-cbc -md D -k key` file, trying each digest in turn."""
    if not is_openssl(data) or len(data) < 32 or len(data) % 16:
        raise DecryptError("not an openssl salted AES-256-CBC file")
    salt, body = data[8:16], data[16:]
    for digest in digests:
        aes_key, iv = _bytes_to_key(key.encode("utf-8"), salt, digest)
        dec = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
        try:
            return _unpad(dec.update(body) + dec.finalize())
        except DecryptError:
            continue  # a wrong digest looks exactly like a wrong key; 1 in 256 passes anyway (see callers)
    raise DecryptError("bad padding with every digest")


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256, for outputs of at most one hash length (RFC 8188 needs 16 and 12 bytes)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def aes128gcm_decrypt(data: bytes, ikm: bytes) -> bytes:
    """RFC 8188 section 2: header salt(16) rs(4) idlen(1) keyid, then records of `rs` bytes each."""
    if len(data) < 21:
        raise DecryptError("shorter than an aes128gcm header")
    salt = data[:16]
    rs, idlen = struct.unpack("!IB", data[16:21])
    if rs < 18:  # section 2: at least one octet of data, the delimiter and the 16-byte tag
        raise DecryptError(f"record size {rs} is below 18")
    body = data[21 + idlen:]
    if not body or len(body) > rs * MAX_RECORDS:
        raise DecryptError("no records" if not body else "too many records")
    cek = AESGCM(_hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16))  # section 2.2
    nonce_base = int.from_bytes(_hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12), "big")  # section 2.3
    records = [body[i:i + rs] for i in range(0, len(body), rs)]
    out = []
    for seq, record in enumerate(records):
        try:
            plain = cek.decrypt((nonce_base ^ seq).to_bytes(12, "big"), record, None)
        except InvalidTag:
            raise DecryptError(f"record {seq} does not authenticate") from None
        data_part = plain.rstrip(b"\x00")  # section 2: padding is the delimiter followed by zeros
        want = b"\x02" if seq == len(records) - 1 else b"\x01"
        if data_part[-1:] != want:
            raise DecryptError(f"record {seq} ends without its delimiter")
        out.append(data_part[:-1])
    return b"".join(out)
