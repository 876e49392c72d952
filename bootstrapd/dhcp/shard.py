"""Which DHCP worker serves a client, and which addresses a worker may hand out (sans-I/O).

With `dhcp.workers: N` (N >= 2) the clients are split by the RFC 3074 load-balancing hash: the hash bucket
(0-255) of the client identifier (option 61), else of chaddr (hlen bytes), and bucket b belongs to worker
b mod N. Every worker sees every broadcast and answers only its own clients, so one client always talks
to one worker, which holds its lease in its own store.

The pools are split by address: worker k may offer a pool address a only when a mod N == k. So two workers
never offer the same address whatever their stores hold, and a pool's addresses spread evenly over the
workers for any range. Reservations are not split: the worker of the reserved device's bucket serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 3074 section 6: the mixing table of the Pearson hash (256 distinct values).
_MIX = bytes((
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, 31, 32, 55, 60,
    152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223, 59, 3, 18, 140, 111, 166, 203, 196,
    134, 243, 124, 95, 222, 179, 197, 65, 180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161,
    209, 23, 97, 16, 40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
    207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, 20, 113, 71, 35,
    128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245, 230, 224, 43, 225, 177, 26, 155, 150,
    212, 142, 218, 115, 241, 73, 88, 105, 39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148,
    154, 122, 12, 84, 82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
    195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, 137, 185, 99, 164,
    102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238, 56, 110, 78, 248, 63, 240, 189, 93,
    92, 51, 53, 183, 19, 171, 72, 50, 33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54,
    202, 125, 188, 213, 96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
    216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
))  # fmt: skip

_OPTIONS_START = 240  # fixed BOOTP header (236) + magic cookie
_CHADDR = 28
_CLIENT_ID = 61  # RFC 2132 9.14
_PAD, _END = 0, 255


def bucket(key: bytes) -> int:
    """RFC 3074 section 5: the hash bucket of a client key, 0-255."""
    h = len(key) & 0xFF
    for octet in reversed(key):
        h = _MIX[h ^ octet]
    return h


def client_key(data: bytes) -> bytes | None:
    """The bytes RFC 3074 hashes, read from a raw DHCP datagram: option 61 when present, else the hlen
    octets of chaddr (at most 16). None when the datagram is too short to be a DHCP message."""
    if len(data) < _OPTIONS_START:
        return None
    i, end = _OPTIONS_START, len(data)
    while i < end:  # the main options area only: clients do not overload option 61 into sname/file
        code = data[i]
        if code == _PAD:
            i += 1
            continue
        if code == _END or i + 1 >= end:
            break
        length = data[i + 1]
        if code == _CLIENT_ID and length > 0 and i + 2 + length <= end:
            return data[i + 2:i + 2 + length]
        i += 2 + length
    hlen = min(data[2], 16)
    return data[_CHADDR:_CHADDR + hlen]


@dataclass(frozen=True, slots=True)
class Shard:
    """Worker `index` of `count`: the clients and pool addresses it serves."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count}")

    @property
    def whole(self) -> bool:
        """One worker serves everything (no split)."""
        return self.count == 1

    def owner(self, data: bytes) -> int:
        """The worker that serves the client of this datagram (worker 0 for what is no DHCP message)."""
        key = client_key(data)
        return 0 if key is None else bucket(key) % self.count

    def owns_address(self, address: int) -> bool:
        """A pool address this worker may offer."""
        return address % self.count == self.index

    def addresses_in(self, first: int, last: int) -> int:
        """How many of first..last this worker may offer."""
        if last < first:
            return 0
        n, k = self.count, self.index
        return (last - k) // n - (first - 1 - k) // n


WHOLE = Shard()
