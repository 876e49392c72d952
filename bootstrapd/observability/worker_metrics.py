"""One scrape for several processes: the DHCP workers' metrics summed into the main process's.

Each worker keeps its own registry (the same Metrics class) and sends a cumulative snapshot of its DHCP
families over its channel every second; the main process's metrics endpoint serves MergedRegistry, which
adds the latest snapshot of every worker to its own values at scrape time. Why not prometheus_client's
multiprocess mode: it changes every metric of the main process (mmap files, no Info metric, per-gauge
modes) for the sake of a few DHCP families, and needs a directory cleaned at every start; cumulative
snapshots need nothing on disk and a lost one is corrected by the next.

A worker that dies takes its counters with it; its last snapshot is kept (`retire`), so the summed
counters never go backwards when the restarted worker starts again from zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

# Families a worker reports: the DHCP ones and the devices it saw first.
WORKER_PREFIXES = ("bootstrapd_dhcp_", "bootstrapd_devices_seen_")
# Gauges every worker reads for the whole host: the same value from each, so not summed.
MAX_GAUGES = frozenset({"bootstrapd_dhcp_kernel_receive_drops"})
_CUMULATIVE = frozenset({"counter", "histogram"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Snapshot = dict[str, tuple[str, dict[SampleKey, float]]]  # family -> (type, sample -> value)


def snapshot(registry: CollectorRegistry) -> list[Any]:
    """A worker's DHCP families as JSON-able lists: [name, type, [[sample, labels, value], ...]]."""
    out: list[Any] = []
    for family in registry.collect():
        if family.name.startswith(WORKER_PREFIXES):
            samples = [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")]
            out.append([family.name, family.type, samples])
    return out


def parse_snapshot(families: list[Any]) -> Snapshot:
    """The inverse of snapshot(); raises ValueError/TypeError on a malformed one."""
    out: Snapshot = {}
    for name, kind, samples in families:
        if not str(name).startswith(WORKER_PREFIXES):
            raise ValueError(f"unexpected family {name!r}")
        values = {(str(s), tuple(sorted((str(k), str(v)) for k, v in labels.items()))): float(value)
                  for s, labels, value in samples}
        out[str(name)] = (str(kind), values)
    return out


class MergedRegistry:
    """What the metrics endpoint collects: the main registry plus every worker's latest snapshot."""

    def __init__(self, main: CollectorRegistry) -> None:
        self.main = main
        self._workers: dict[int, Snapshot] = {}
        self._retired: Snapshot = {}

    def update(self, worker: int, snap: Snapshot) -> None:
        self._workers[worker] = snap

    def retire(self, worker: int) -> None:
        """The worker died: keep its cumulative values (counters, histograms), forget its gauges."""
        snap = self._workers.pop(worker, None)
        for name, (kind, values) in (snap or {}).items():
            if kind in _CUMULATIVE:
                kept = self._retired.setdefault(name, (kind, {}))[1]
                for key, value in values.items():
                    kept[key] = kept.get(key, 0.0) + value

    def collect(self) -> Iterator[Metric]:
        sources = [self._retired, *self._workers.values()]
        for family in self.main.collect():
            extra = [s[family.name][1] for s in sources if family.name in s]
            yield _merged(family, extra) if extra else family

    def restricted_registry(self, names: Iterable[str]) -> _Restricted:
        """For `/metrics?name[]=...` (prometheus_client's exposition asks the registry for this)."""
        return _Restricted(self, frozenset(names))


class _Restricted:
    def __init__(self, registry: MergedRegistry, names: frozenset[str]) -> None:
        self._registry, self._names = registry, names

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            samples = [s for s in family.samples if s.name in self._names]
            if samples:
                out = Metric(family.name, family.documentation, family.type, family.unit)
                out.samples = samples
                yield out


def _merged(family: Metric, extra: list[dict[SampleKey, float]]) -> Metric:
    combine = max if family.name in MAX_GAUGES else _add
    values: dict[SampleKey, float] = {}
    for s in family.samples:
        values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    for snap in extra:
        for key, value in snap.items():
            values[key] = combine(values[key], value) if key in values else value
    out = Metric(family.name, family.documentation, family.type, family.unit)
    for (name, labels), value in values.items():
        out.add_sample(name, dict(labels), value)
    return out


def _add(a: float, b: float) -> float:
    return a + b
