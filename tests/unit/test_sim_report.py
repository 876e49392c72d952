"""The staging report: one line per phone, stuck phones say why, the summary counts paths and duplicates."""

from __future__ import annotations

from bootstrapd.sim.report import PhoneReport, Stage, format_report, progress_bar, summary
from bootstrapd.sim.resync import Resync, ResyncState


def fetched(mac: str, address: str, found_by: str, url: str) -> PhoneReport:
    return PhoneReport(mac, "CP-8841-3PCC", Stage.FETCHED, address, found_by, url, 120, powered_at=0.1,
                       dhcp_seconds=0.2, discovery_seconds=0.01, fetch_seconds=0.05, seconds=0.3, discovers=1,
                       requests=1)


REPORTS = [
    fetched("00:56:2b:00:00:01", "198.18.0.100", "option 160", "http://prov1/8841-3PCC.xml"),
    fetched("00:56:2b:00:00:02", "198.18.0.101", "SRV https, priority 20", "https://prov2/8841-3PCC.xml"),
    PhoneReport("00:56:2b:00:00:03", "CP-6841-3PCC", Stage.LEASED, "198.18.0.101", reason="no domain (15)",
                dhcp_seconds=0.4, seconds=0.5, discovers=2, requests=1),
    PhoneReport("00:56:2b:00:00:04", "CP-6841-3PCC", Stage.DHCP, reason="no lease after 3 DISCOVER and 0 REQUEST",
                discovers=3),
]


def test_one_line_per_phone_and_why_it_is_stuck() -> None:
    text = format_report(REPORTS)
    assert "00:56:2b:00:00:01  CP-8841-3PCC  198.18.0.100   option 160" in text
    assert "https://prov2/8841-3PCC.xml" in text
    assert "stuck at leased: no domain (15)" in text
    assert "stuck at dhcp: no lease after 3 DISCOVER and 0 REQUEST" in text


def test_summary_counts_paths_and_reports_duplicate_addresses() -> None:
    lines = summary(REPORTS)
    assert lines[0] == "2/4 phones fetched their profile; 3/4 leased, 2 distinct addresses, DUPLICATES: 198.18.0.101"
    assert "found their server by: SRV https 1, option 160 1" in lines
    assert any("DHCP retransmissions and restarts: 3" in line for line in lines)


def test_json_round_trip() -> None:
    assert [PhoneReport.from_json(r.to_json()) for r in REPORTS] == REPORTS


def test_progress_bar() -> None:
    assert progress_bar(5, 10, 20, 1.5, width=20) == "[#####+++++..........]    5 done   10 leased / 20    1.5s"


def resynced(mac: str, state: ResyncState, **kw: object) -> PhoneReport:
    r = fetched(mac, "198.18.0.12" + mac[-1], "option 160", "http://prov1/8841-3PCC.xml")
    r.add_resync(Resync(state, **kw))  # type: ignore[arg-type]
    return r


RESYNCED = [
    resynced("00:56:2b:00:00:05", ResyncState.DONE, url="https://prov2/remote/00562b000005.xml", hops=1, retries=1,
             upgrade="done", syslog_server="198.18.0.1:514", syslog_sent=6),
    resynced("00:56:2b:00:00:06", ResyncState.FAILED, url="https://prov2/remote/00562b000006.xml",
             reason="class C: decryption failed", syslog_server="198.18.0.1:514", syslog_sent=2),
    resynced("00:56:2b:00:00:07", ResyncState.SILENT),
    resynced("00:56:2b:00:00:08", ResyncState.NONE),
]


def test_resync_per_phone_and_in_the_summary() -> None:
    text = format_report(RESYNCED)
    assert ("resync: done, https://prov2/remote/00562b000005.xml (1 hop, 1 retry); upgrade done; "
            "6 syslog lines to 198.18.0.1:514") in text
    assert "resync: FAILED, https://prov2/remote/00562b000006.xml: class C: decryption failed; 2 syslog lines" in text
    assert "resync: silent (never came back after its first profile)" in text
    assert text.count("resync:") == 4  # three phones and the summary: "none" prints nothing
    assert "resync: 1 done, 1 failed, 1 silent; upgrade: 1 done, 0 failed" in summary(RESYNCED)
    assert "resync failed (1): class C: decryption failed" in summary(RESYNCED)
    assert not any(line.startswith("resync") for line in summary(REPORTS))


def test_resync_fields_round_trip_through_json() -> None:
    assert [PhoneReport.from_json(r.to_json()) for r in RESYNCED] == RESYNCED
    assert RESYNCED[0].to_json()["resync"] == "done"
