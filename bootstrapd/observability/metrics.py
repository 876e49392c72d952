"""Every Prometheus metric bootstrapd exports, in one place (design.md convention 10).

Names: `bootstrapd_` + subsystem (`dhcp_`, `dns_`) + what, `_total` counters, `_seconds` histograms.
Labels come only from enums or configured names, never from MACs or addresses. The registry is injected so
that tests get their own.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from bootstrapd import __version__

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_MODEL = re.compile(r"^CP-\d{4}[A-Z]?-3PCC[A-Z]?$", re.IGNORECASE)


def model_label(vendor_class: str | None) -> str:
    """A bounded label from option 60: a recognised `CP-nnnn-3PCC` value, else `other`."""
    if vendor_class:
        v = vendor_class.rstrip("\x00").strip()
        if _MODEL.match(v):
            return v.upper()
    return "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        p = "bootstrapd"
        self.build_info = Info(f"{p}_build", "bootstrapd build information", registry=r)
        self.build_info.info({"version": __version__})

        # DHCP
        self.dhcp_received = Counter(
            f"{p}_dhcp_packets_received_total", "DHCP packets received by message type", ["type"], registry=r
        )
        self.dhcp_sent = Counter(
            f"{p}_dhcp_replies_sent_total", "DHCP replies sent by message type", ["type"], registry=r
        )
        self.dhcp_drops = Counter(
            f"{p}_dhcp_drops_total", "DHCP packets dropped without a reply, by reason", ["reason"], registry=r
        )
        self.dhcp_kernel_drops = Gauge(
            f"{p}_dhcp_kernel_receive_drops", "datagrams the kernel dropped on our DHCP sockets", registry=r
        )
        self.dhcp_leases_active = Gauge(
            f"{p}_dhcp_leases_active", "active (bound) leases per subnet", ["subnet"], registry=r
        )
        self.dhcp_pool_size = Gauge(
            f"{p}_dhcp_pool_size", "addresses in the dynamic pools per subnet", ["subnet"], registry=r
        )
        self.store_up = Gauge(
            f"{p}_store_up", "1 while the lease store is reachable (0: new addresses paused)", registry=r
        )
        self.store_up.set(1)
        self.dhcp_offers_held = Gauge(f"{p}_dhcp_offers_held", "addresses held for an OFFER", registry=r)
        self.dhcp_latency = Histogram(
            f"{p}_dhcp_exchange_seconds",
            "time from packet in to reply out",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dhcp_errors = Counter(
            f"{p}_dhcp_internal_errors_total", "bugs: exceptions escaping the DHCP core", registry=r
        )
        # DHCP worker processes (dhcp.workers >= 1; transport/dhcp_workers.py)
        self.dhcp_workers = Gauge(f"{p}_dhcp_workers", "DHCP worker processes running", registry=r)
        self.dhcp_worker_restarts = Counter(
            f"{p}_dhcp_worker_restarts_total", "DHCP worker processes restarted after they died", registry=r
        )
        self.dhcp_channel_drops = Counter(
            f"{p}_dhcp_channel_drops_total",
            "lease and outcome records a DHCP worker could not hand to the main process (it was behind)", registry=r
        )
        self.dhcp_forwarded = Counter(
            f"{p}_dhcp_forwarded_total", "unicast DHCP datagrams passed to the worker that serves their client",
            registry=r,
        )
        self.devices_by_class = Counter(
            f"{p}_devices_seen_by_class_total", "new devices seen, by matched class", ["class"], registry=r
        )
        self.devices_by_model = Counter(
            f"{p}_devices_seen_by_model_total", "new devices seen, by model from option 60", ["model"], registry=r
        )
        # The funnel (observability/devices.py), set on the tracker's tick
        self.devices_by_stage = Gauge(
            f"{p}_devices_by_stage", "devices whose current funnel stage is this one", ["stage"], registry=r
        )
        self.devices_stalled = Gauge(
            f"{p}_devices_stalled", "devices in this stage for longer than floor.stall_after", ["stage"], registry=r
        )
        self.devices_tracked = Gauge(f"{p}_devices_tracked", "devices in the device table", registry=r)
        self.devices_missing = Gauge(
            f"{p}_devices_missing", "inventory devices never seen (0 without an inventory)", registry=r
        )
        self.devices_unexpected = Gauge(
            f"{p}_devices_unexpected", "devices seen that are not in the inventory", registry=r
        )
        self.device_events_unattributed = Counter(
            f"{p}_device_events_unattributed_total",
            "file transfers and syslog messages that named no device we could tell", ["source"], registry=r
        )
        self.device_mac_conflicts = Counter(
            f"{p}_device_mac_conflicts_total",
            "events whose sources disagreed on the device's MAC (path, User-Agent, message, lease)", ["source"],
            registry=r,
        )
        # The cross-site inventory's shipper (bootstrapd/central), from its own thread
        self.central_up = Gauge(
            f"{p}_central_up", "1 while the central inventory database takes this site's ships", registry=r
        )
        self.central_outbox_rows = Gauge(
            f"{p}_central_outbox_rows", "device changes waiting in the outbox for the central database", registry=r
        )
        self.central_last_shipped = Gauge(
            f"{p}_central_last_shipped_timestamp_seconds", "when the central database last took a ship", registry=r
        )
        self.rogue_offers = Counter(
            f"{p}_dhcp_foreign_offers_total", "OFFERs seen from other DHCP servers", registry=r
        )

        # DNS
        self.dns_queries = Counter(
            f"{p}_dns_queries_total", "DNS queries by qtype and transport", ["qtype", "transport"], registry=r
        )
        self.dns_responses = Counter(
            f"{p}_dns_responses_total", "DNS responses by rcode", ["rcode"], registry=r
        )
        self.dns_drops = Counter(
            f"{p}_dns_drops_total", "DNS queries dropped without a reply, by reason", ["reason"], registry=r
        )
        self.dns_latency = Histogram(
            f"{p}_dns_response_seconds", "time from query in to reply out", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.dns_errors = Counter(
            f"{p}_dns_internal_errors_total", "bugs: exceptions answered with SERVFAIL", registry=r
        )

        # Syslog (labels: bootstrapd.syslog.Kind and DropReason values)
        self.syslog_messages = Counter(
            f"{p}_syslog_messages_total", "syslog messages accepted, by parsed kind", ["kind"], registry=r
        )
        self.syslog_drops = Counter(
            f"{p}_syslog_drops_total", "syslog datagrams not accepted, by reason", ["reason"], registry=r
        )
        self.syslog_sources = Gauge(
            f"{p}_syslog_sources_tracked", "sources in the sink's rate-limit table", registry=r
        )
        self.syslog_kernel_drops = Gauge(
            f"{p}_syslog_kernel_receive_drops", "datagrams the kernel dropped on our syslog socket (full receive "
            "buffer: the sink fell behind)", registry=r
        )
        self.syslog_receive_buffer = Gauge(
            f"{p}_syslog_receive_buffer_bytes", "the syslog socket's receive buffer as the kernel reports it "
            "(twice what was set: its bookkeeping; each queued datagram takes about 1 KiB of it)", registry=r
        )
        self.syslog_errors = Counter(
            f"{p}_syslog_internal_errors_total", "bugs: exceptions escaping the message hook", registry=r
        )

        # Files (TFTP, HTTP, HTTPS): one count per request at its end
        self.files_fetches = Counter(
            f"{p}_files_fetches_total", "file requests by protocol and result (ok or the refusal reason)",
            ["protocol", "result"], registry=r,
        )
        self.files_bytes_sent = Counter(
            f"{p}_files_bytes_sent_total", "file body bytes sent by protocol", ["protocol"], registry=r
        )
        self.files_render_cache_bytes = Gauge(
            f"{p}_files_render_cache_bytes", "bytes the render cache holds (bodies and 1 KiB per key; at most "
            "files.render_cache)", registry=r
        )
        self.files_render_cache_entries = Gauge(
            f"{p}_files_render_cache_entries", "rendered profiles in the render cache", registry=r
        )
        self.files_render_cache_evictions = Counter(
            f"{p}_files_render_cache_evictions_total", "rendered profiles dropped from the render cache to fit "
            "its budget (many: a floor bigger than the budget, or a client naming devices that do not exist)",
            registry=r,
        )

        # HTTP
        self.http_connections = Gauge(f"{p}_http_connections", "open HTTP and HTTPS connections", registry=r)
        self.http_limit_closes = Counter(
            f"{p}_http_limit_closes_total", "HTTP connections closed by a limit, by limit", ["limit"], registry=r
        )

        # TFTP
        self.tftp_sessions = Gauge(f"{p}_tftp_sessions", "TFTP transfers in progress", registry=r)
        self.tftp_drops = Counter(
            f"{p}_tftp_drops_total",
            "TFTP datagrams that started no transfer (parse_failed, not_a_request, unknown_tid)",
            ["reason"], registry=r,
        )
        self.tftp_retransmissions = Counter(
            f"{p}_tftp_retransmissions_total", "TFTP windows (or OACKs) sent again after a timeout", registry=r
        )
        self.tftp_worker_transfers = Counter(
            f"{p}_tftp_worker_transfers_total", "TFTP transfers of big files handed to a transfer worker process",
            registry=r,
        )
        self.tftp_worker_restarts = Counter(
            f"{p}_tftp_worker_restarts_total", "TFTP transfer worker processes started again after dying",
            registry=r,
        )

        # Service
        self.reloads = Counter(
            f"{p}_reloads_total", "configuration reloads by result", ["result"], registry=r
        )
        self.reload_last_success = Gauge(
            f"{p}_reload_last_success_timestamp_seconds", "time of the last successful (re)load", registry=r
        )
        self.reload_last_failed = Gauge(
            f"{p}_reload_last_failed", "1 when the last reload was rejected", registry=r
        )
        self.loop_lag = Gauge(
            f"{p}_event_loop_lag_seconds", "how late the main event loop ran a timer, worst of the last second",
            registry=r,
        )
        self.loop_stalls = Counter(
            f"{p}_event_loop_stalls_total", "times the main event loop ran a timer 0.25 s or more late "
            "(each one a loop.stalled event)", registry=r,
        )
