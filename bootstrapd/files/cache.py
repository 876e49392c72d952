"""The render cache: rendered profiles kept by a byte budget, least recently used out first.

Any client on the staging LAN chooses the device variables a profile is rendered with (a User-Agent MAC, a
firmware string, a per-MAC name), so an entry count bounds nothing a hostile client cannot fill with
profiles of any size; the budget counts each entry's bytes plus its key's overhead, and every eviction is
counted (the shell exports `bootstrapd_files_render_cache_evictions_total`). A miss only costs a render.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

# Bytes an entry costs beyond its body: the key (a DeviceVars of ten short strings, ~700 bytes measured
# with tracemalloc) and its dict slot, rounded up for the allocator's slack.
ENTRY_OVERHEAD = 1024


class RenderCache:
    """`get`/`put` of rendered bodies; `bytes` never exceeds `budget` (`files.render_cache`; 0 keeps nothing).
    The default, 8 MiB, holds ~3,700 bootstrap profiles of the example templates (1.2 KB each)."""

    __slots__ = ("_entries", "budget", "bytes", "evictions")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0  # sum of cost() over the entries
        self.evictions = 0  # entries dropped to make room (a counter: never goes down)
        # least recently used first; OrderedDict, as a plain dict's iteration from the front slows down
        # with every entry deleted there until it resizes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def cost(body: bytes) -> int:
        return len(body) + ENTRY_OVERHEAD

    def get(self, key: Hashable) -> bytes | None:
        body = self._entries.get(key)
        if body is not None:
            self._entries.move_to_end(key)
        return body

    def put(self, key: Hashable, body: bytes) -> None:
        """Keep `body` under `key`, evicting the least recently used entries until it fits; a body bigger
        than the whole budget is not kept (and evicts nothing)."""
        cost = self.cost(body)
        if cost > self.budget:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= self.cost(old)
        while self.bytes + cost > self.budget:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= self.cost(evicted)
            self.evictions += 1
        self._entries[key] = body
        self.bytes += cost
