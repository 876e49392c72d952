"""Profile encryption in the two formats the phones decrypt (mpp-bootstrap.md section 6).

- `openssl enc -aes-256-cbc -md sha256 -k KEY` (`md5` on old firmware): `Salted__`, an 8-byte salt, then
  AES-256-CBC with PKCS#7 padding, key and IV from OpenSSL's EVP_BytesToKey (one iteration, never PBKDF2).
- RFC 8188 `Content-Encoding: aes128gcm`: a header (salt, record size, key id) and AES-128-GCM records, key
  and nonce from HKDF-SHA256 (section 2.2, 2.3). The input keying material is the inventory `key` as its
  UTF-8 bytes: the same text the bootstrap profile writes into the phone's `IKM_HTTP_Encrypt_Content`.

Salts are parameters: the caller draws them (os.urandom at the shell boundary), tests pass fixed ones.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootstrapd.errors import BootstrapdError

OPENSSL_MAGIC = b"Salted__"
OPENSSL_SALT = 8
RFC8188_SALT = 16
RFC8188_RS = 4096  # record size (section 2): ciphertext bytes per record, tag included
TAG = 16
CEK_INFO = b"Content-Encoding: aes128gcm\x00"  # RFC 8188 section 2.2
NONCE_INFO = b"Content-Encoding: nonce\x00"  # RFC 8188 section 2.3


class CryptoError(BootstrapdError, ValueError):
    """A key or salt that cannot be used, or a ciphertext that does not decrypt."""


def evp_bytes_to_key(password: bytes, salt: bytes, digest: str, size: int = 48) -> bytes:
    """OpenSSL's EVP_BytesToKey with count 1: D_i = H(D_{i-1} || password || salt), concatenated."""
    out = b""
    block = b""
    while len(out) < size:
        block = hashlib.new(digest, block + password + salt).digest()
        out += block
    return out[:size]


def openssl_encrypt(plain: bytes, key: str, salt: bytes, digest: str = "sha256") -> bytes:
    """What `openssl enc -aes-256-cbc -md DIGEST -k KEY` writes for `plain` with this salt."""
    if len(salt) != OPENSSL_SALT:
        raise CryptoError(f"the openssl format needs an {OPENSSL_SALT}-byte salt, got {len(salt)}")
    if not key:
        raise CryptoError("empty encryption key")
    material = evp_bytes_to_key(key.encode("utf-8"), salt, digest)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(material[:32]), modes.CBC(material[32:48])).encryptor()
    return OPENSSL_MAGIC + salt + enc.update(padded) + enc.finalize()


def openssl_decrypt(data: bytes, key: str, digest: str = "sha256") -> bytes:
    """The inverse of `openssl_encrypt` (for `check` and tests); CryptoError when it does not decrypt."""
    if not data.startswith(OPENSSL_MAGIC) or len(data) < 32 or (len(data) - 16) % 16:
        raise CryptoError("not an `openssl enc` salted file")
    salt, body = data[8:16], data[16:]
    material = evp_bytes_to_key(key.encode("utf-8"), salt, digest)
    dec = Cipher(algorithms.AES(material[:32]), modes.CBC(material[32:48])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(dec.update(body) + dec.finalize()) + unpadder.finalize()
    except ValueError:
        raise CryptoError("bad padding: wrong key") from None


def _hkdf_expand_one(prk: bytes, info: bytes, size: int) -> bytes:
    # RFC 5869 section 2.3 with L <= HashLen: T(1) = HMAC(PRK, info || 0x01).
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:size]


def rfc8188_keys(ikm: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """(content-encryption key, nonce base) of RFC 8188 sections 2.2 and 2.3."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()  # HKDF-Extract (RFC 5869 section 2.2)
    return _hkdf_expand_one(prk, CEK_INFO, 16), _hkdf_expand_one(prk, NONCE_INFO, 12)


def _nonce(base: bytes, seq: int) -> bytes:
    # RFC 8188 section 2.3: the record sequence number, XORed into the last bytes of the nonce base.
    return (int.from_bytes(base, "big") ^ seq).to_bytes(12, "big")


def aes128gcm_encrypt(plain: bytes, ikm: bytes, salt: bytes, rs: int = RFC8188_RS, keyid: bytes = b"") -> bytes:
    """RFC 8188 content coding of `plain`: header, then records of `rs` bytes (the last may be shorter)."""
    if len(salt) != RFC8188_SALT:
        raise CryptoError(f"aes128gcm needs a {RFC8188_SALT}-byte salt, got {len(salt)}")
    if not ikm:
        raise CryptoError("empty input keying material")
    if rs < 18 or rs >= 2**32 or len(keyid) > 255:
        raise CryptoError("record size must be 18..2^32-1 and the key id at most 255 bytes")
    cek, base = rfc8188_keys(ikm, salt)
    gcm = AESGCM(cek)
    chunk = rs - TAG - 1  # each record: data, one delimiter octet, the tag
    pieces = [plain[i : i + chunk] for i in range(0, len(plain), chunk)] or [b""]
    out = [salt, struct.pack("!IB", rs, len(keyid)), keyid]
    for seq, piece in enumerate(pieces):
        delimiter = b"\x02" if seq == len(pieces) - 1 else b"\x01"  # section 2: 2 = last record
        out.append(gcm.encrypt(_nonce(base, seq), piece + delimiter, None))
    return b"".join(out)


def aes128gcm_decrypt(data: bytes, ikm: bytes) -> bytes:
    """RFC 8188 decoding (for `check` and tests); CryptoError on any malformed or unauthentic input."""
    if len(data) < RFC8188_SALT + 5:
        raise CryptoError("shorter than the aes128gcm header")
    salt = data[:16]
    rs, idlen = struct.unpack("!IB", data[16:21])
    if rs < 18:
        raise CryptoError(f"record size {rs} below 18")
    body = data[21 + idlen :]
    cek, base = rfc8188_keys(ikm, salt)
    gcm = AESGCM(cek)
    records = [body[i : i + rs] for i in range(0, len(body), rs)]
    out = []
    for seq, record in enumerate(records):
        try:
            plain = gcm.decrypt(_nonce(base, seq), record, None)
        except Exception:  # cryptography's InvalidTag: wrong key or altered data
            raise CryptoError(f"record {seq} does not authenticate") from None
        stripped = plain.rstrip(b"\x00")
        last = seq == len(records) - 1
        if not stripped or stripped[-1:] != (b"\x02" if last else b"\x01"):
            raise CryptoError(f"record {seq} has a bad padding delimiter")
        out.append(stripped[:-1])
    return b"".join(out)
