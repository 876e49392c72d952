"""The render cache: a byte budget no sequence of puts exceeds, least recently used out first, evictions
counted; and the resolver's cache under a flood of made-up devices stays inside `files.render_cache`."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path

from files_site import make_site

from bootstrapd.config import load_site
from bootstrapd.files.cache import ENTRY_OVERHEAD, RenderCache
from bootstrapd.files.outcome import FileRequest, Protocol, Rendered
from bootstrapd.files.resolve import FileResolver, load_inventory

CLIENT = IPv4Address("198.18.0.120")


def body(n: int, fill: bytes = b"x") -> bytes:
    return fill * (n - ENTRY_OVERHEAD)  # an entry costing exactly n bytes


def test_the_least_recently_used_entry_goes_first_and_is_counted() -> None:
    c = RenderCache(6000)
    c.put("a", body(2000, b"a"))
    c.put("b", body(2000, b"b"))
    c.put("c", body(2000, b"c"))
    assert (len(c), c.bytes, c.evictions) == (3, 6000, 0)
    assert c.get("a") == body(2000, b"a")  # now the most recently used
    c.put("d", body(2000, b"d"))
    assert c.get("b") is None and c.get("a") is not None and c.get("c") is not None
    assert (len(c), c.bytes, c.evictions) == (3, 6000, 1)


def test_a_big_entry_evicts_as_many_as_it_needs() -> None:
    c = RenderCache(8000)
    for key in "abcd":
        c.put(key, body(2000))
    c.put("big", body(5000))
    assert [k for k in "abcd" if c.get(k) is not None] == ["d"]
    assert (c.bytes, c.evictions) == (7000, 3)


def test_a_body_bigger_than_the_budget_is_not_kept_and_evicts_nothing() -> None:
    c = RenderCache(6000)
    c.put("a", body(2000))
    c.put("huge", body(6001))
    assert c.get("huge") is None and c.get("a") is not None
    assert (c.bytes, c.evictions) == (2000, 0)


def test_putting_a_key_again_replaces_its_bytes() -> None:
    c = RenderCache(6000)
    c.put("a", body(4000))
    c.put("a", body(3000, b"y"))
    assert (len(c), c.bytes, c.evictions, c.get("a")) == (1, 3000, 0, body(3000, b"y"))


def test_budget_zero_keeps_nothing() -> None:
    c = RenderCache(0)
    c.put("a", b"")
    assert (len(c), c.bytes, c.get("a")) == (0, 0, None)


def test_spoofed_user_agent_macs_cannot_grow_the_resolver_past_its_budget(tmp_path: Path) -> None:
    files = load_site(str(make_site(tmp_path))).files
    assert files is not None
    budget = 20 * (ENTRY_OVERHEAD + 600)
    r = FileResolver(dataclasses.replace(files, render_cache=budget), load_inventory(files), lambda _: None,
                     random_bytes=lambda n: b"\0" * n)
    for i in range(2000):
        got = r.resolve(FileRequest("/CP-7841-3PCC.cfg", Protocol.HTTP, CLIENT,
                                    f"Cisco-CP-7841-3PCC/12.0.1 (0a{i:010x})"))
        assert isinstance(got, Rendered) and f"0a:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}".encode() in got.body
        assert r.cache.bytes <= budget
        cost = RenderCache.cost(got.body)  # unencrypted, not gzipped: the body is the cached render
    kept = budget // cost
    assert len(r.cache) == kept and r.cache.evictions == 2000 - kept
