"""After the first profile: the phone reads it, follows its new `Profile_Rule`, upgrades, and says so in syslog.

mpp-bootstrap.md sections 4, 6, 7 and 9. Blocking code, in the phone's worker thread after provision():
- the first profile (and every later one) is decrypted (`--key`: openssl AES-256-CBC; `Content-Encoding:
  aes128gcm`: RFC 8188 with `IKM_HTTP_Encrypt_Content`) and parsed; parameters accumulate, the last wins;
- while `Profile_Rule` names another URL than the one just fetched, the phone resyncs there (at most
  `max_hops` times): `Requesting resync`, the fetch, then `Successful resync` or `Resync failed: ERR`;
  class B failures (404) and unreachable servers are retried after `Resync_Error_Retry_Delay`, class C
  failures (decryption failed, 403, ...) are final. A rule equal to the last URL ends the chain: resynced.
- after a successful chain, `Profile_Rule_B`..`_D` run once each (a real phone runs them on every resync);
- with `Upgrade_Rule` set, the load is fetched and thrown away, with the upgrade lines.
Syslog datagrams go from the leased address to `Syslog_Server` (UDP, default port 514).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bootstrapd.sim.decrypt import DIGESTS, DecryptError, aes128gcm_decrypt, is_openssl, openssl_decrypt
from bootstrapd.sim.discovery import ProfileUrl, parse_rule
from bootstrapd.sim.fetch import Fetched, Fetcher
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.phonelog import Event, Header, datagram, log_line, syslog_target
from bootstrapd.sim.profile import ProfileError, number, parse_profile
from bootstrapd.sim.resolver import ResolveError

QUIRK_HEADER = "X-Bootstrapd-Sim-Quirk"  # `fail-once`: the lab server answers this path 404 the first time
DEFAULT_RETRY_DELAY = 60.0  # seconds, when neither the profile nor the simulator says (phones: 3600)
EXTRA_RULES = ("Profile_Rule_B", "Profile_Rule_C", "Profile_Rule_D")
MAX_STEPS = 32  # entries of Resync.steps
Emit = Callable[[dict[str, Any]], None]


class ResyncState(enum.Enum):
    NONE = "none"  # the first profile named no other profile: nothing to resync to
    DONE = "done"  # resynced: the chain reached a profile whose rule is the URL it came from (or the hop bound)
    FAILED = "failed"  # a resync failed for good (class C, or retries exhausted)
    SILENT = "silent"  # a --silent phone: never came back after its first profile


@dataclass(frozen=True)
class ResyncSettings:
    max_hops: int = 3
    retries: int = 2  # after a class B or unreachable failure
    retry_delay: float | None = None  # overrides the profile's Resync_Error_Retry_Delay (short, for tests)
    stop: threading.Event = field(default_factory=threading.Event)  # set when the run ends: no more waiting


@dataclass
class Resync:
    state: ResyncState = ResyncState.NONE
    url: str | None = None  # the last resync URL requested
    reason: str | None = None  # why it failed
    hops: int = 0  # successful resyncs of Profile_Rule
    retries: int = 0
    upgrade: str | None = None  # "done" | "failed" (None: no Upgrade_Rule)
    upgrade_url: str | None = None
    syslog_server: str | None = None
    syslog_sent: int = 0
    periodic: float | None = None  # Resync_Periodic of the last profile: when the phone would come back
    steps: list[str] = field(default_factory=list)  # every resync or upgrade fetch and its outcome
    seconds: float = 0.0


def open_profile(fetched: Fetched, url: ProfileUrl, phone: Phone, ikm: str | None,
                 resync: bool = False) -> dict[str, str]:
    """The parameters of a fetched profile, decrypted as the phone does; ProfileError says why not. A
    wrong-key phone gets its first profile right (else it could not even log) and its resyncs wrong."""
    body, encrypted = fetched.body, False
    wrong = resync and phone.wrong_key
    try:
        if fetched.encoding == "aes128gcm":
            secret = ikm or phone.key or url.key
            if not secret:
                raise ProfileError("decryption failed: aes128gcm content and no IKM_HTTP_Encrypt_Content")
            body, encrypted = aes128gcm_decrypt(body, phone.decryption_key(secret, wrong).encode("utf-8")), True
        elif fetched.encoding not in (None, "identity"):
            raise ProfileError(f"unsupported Content-Encoding {fetched.encoding}")
    except DecryptError:
        raise ProfileError("decryption failed") from None
    if url.key is not None and (not encrypted or is_openssl(body)):
        return _cbc_profile(body, phone.decryption_key(url.key, wrong))
    if is_openssl(body):
        raise ProfileError("encrypted profile and no --key in the profile rule")
    try:
        return parse_profile(body)
    except ProfileError:
        if encrypted:  # garbage that passed authentication cannot happen; keep the message uniform anyway
            raise ProfileError("decryption failed") from None
        raise


def _cbc_profile(body: bytes, key: str) -> dict[str, str]:
    """SHA-256 (new firmware), then MD5 (old): the first digest whose plaintext is a profile. A wrong
    digest passes the padding check 1 time in 256, so padding alone cannot pick the digest."""
    for digest in DIGESTS:
        try:
            return parse_profile(openssl_decrypt(body, key, (digest,)))
        except (DecryptError, ProfileError):
            continue
    raise ProfileError("decryption failed")


def _error_text(outcome: str) -> str:
    """$ERR: the outcome without our class prefix ("class B: 404 file not found" -> "404 file not found")."""
    head, sep, rest = outcome.partition(": ")
    return rest if sep and head in ("class B", "class C") else outcome


class _Syslog:
    """The phone's syslog client: UDP from its leased address to Syslog_Server."""

    def __init__(self, phone: Phone, ip: str, address: Callable[[str], str], clock: Callable[[], float]) -> None:
        self.phone, self.ip, self.address, self.clock = phone, ip, address, clock
        self.sock: socket.socket | None = None
        self.sent = 0
        self.server: str | None = None

    def send(self, params: Mapping[str, str], event: Event, url: ProfileUrl | None = None, servip: str = "",
             err: str = "") -> None:
        target = syslog_target(params.get("Syslog_Server", ""))
        if target is None:
            return
        try:
            dest = (self.address(target[0]), target[1])
        except ResolveError:
            return  # a phone that cannot resolve its syslog server just does not log
        fields: dict[str, Any] = {"err": err}
        if url is not None:
            fields |= {"scheme": url.scheme, "servip": servip or url.host, "port": url.port, "path": url.path}
        line = log_line(event, params, self.phone, self.ip, **fields)
        header = Header.BARE if self.phone.syslog_header == "bare" else Header.RFC3164
        if self.sock is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((self.ip, 0))
        try:
            self.sock.sendto(datagram(line, header, f"SEP{self.phone.ma.upper()}", self.clock()), dest)
            self.sent += 1
            self.server = f"{dest[0]}:{dest[1]}"
        except OSError:
            pass  # UDP: a lost line is the floor's problem to notice, as with a real phone

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class Resyncer:
    """One phone's life after its first profile (`run`)."""

    def __init__(self, phone: Phone, ip: str, fetcher: Fetcher, default_host: str | None, settings: ResyncSettings,
                 emit: Emit | None = None, clock: Callable[[], float] = time.time) -> None:
        self.phone, self.ip, self.fetcher, self.default_host = phone, ip, fetcher, default_host
        self.settings = settings
        self.emit = emit or (lambda event: None)
        self.log = _Syslog(phone, ip, self._address, clock)
        self.result = Resync()

    def _address(self, host: str) -> str:
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            return self.fetcher.resolve(host)

    def _event(self, name: str, **fields: Any) -> None:
        self.emit({"event": name, "mac": self.phone.mac, **fields})

    def _step(self, text: str) -> None:
        if len(self.result.steps) < MAX_STEPS:
            self.result.steps.append(text)

    def run(self, first: ProfileUrl, params: dict[str, str]) -> Resync:
        t0 = time.monotonic()
        if self.phone.silent:
            self.result.state = ResyncState.SILENT
            return self.result
        try:
            if self.phone.fail_resync:
                self.fetcher.headers[QUIRK_HEADER] = "fail-once"  # the Profile_Rule chain only
            params = self._chain(first, params)
            self.fetcher.headers.pop(QUIRK_HEADER, None)
            if self.result.state is ResyncState.DONE:
                params = self._extra_rules(params)
            if params.get("Upgrade_Rule"):
                self._upgrade(params)
        finally:
            self.log.close()
            self.fetcher.headers.pop(QUIRK_HEADER, None)
        self.result.periodic = number(params, "Resync_Periodic", 3600.0)
        self.result.syslog_sent, self.result.syslog_server = self.log.sent, self.log.server
        self.result.seconds = time.monotonic() - t0
        return self.result

    def _rule(self, rule: str) -> ProfileUrl | None:
        return parse_rule(rule, self.phone, self.ip, self.default_host)

    def _chain(self, current: ProfileUrl, params: dict[str, str]) -> dict[str, str]:
        """Follow Profile_Rule while it names a new URL; the accumulated parameters at the end."""
        for _ in range(self.settings.max_hops):
            rule = params.get("Profile_Rule", "")
            url = self._rule(rule) if rule else None
            if not rule or (url is not None and str(url) == str(current)):
                break
            if url is None:
                self._fail(params, None, f"unusable Profile_Rule {rule!r}")
                return params
            got = self._resync(url, params, retries=self.settings.retries)
            if got is None:
                return params
            params, current = {**params, **got}, url
            self.result.hops += 1
        if self.result.hops:
            self.result.state = ResyncState.DONE
        return params

    def _extra_rules(self, params: dict[str, str]) -> dict[str, str]:
        for name in EXTRA_RULES:
            rule = params.get(name, "")
            url = self._rule(rule) if rule else None
            if url is None:
                if rule:
                    self._step(f"{name} {rule!r}: not usable, skipped")
                continue
            got = self._resync(url, params, retries=0)
            if got is None:
                self.result.reason = f"{name}: {self.result.reason}"
                return params
            params = {**params, **got}
        return params

    def _resync(self, url: ProfileUrl, params: dict[str, str], retries: int) -> dict[str, str] | None:
        """One resync with its retries: the new profile's parameters, or None (result says why)."""
        for attempt in range(retries + 1):
            servip = self._servip(url)
            self.result.url = str(url)
            self.log.send(params, Event.RESYNC_REQUEST, url, servip)
            self._event("resync_requested", url=str(url), attempt=attempt)
            got, outcome, retryable = self._fetch_profile(url, servip, params)
            self._step(f"resync {url}: {outcome}")
            if got is not None:
                self.log.send(params, Event.RESYNC_SUCCESS, url, servip)
                self._event("resync_succeeded", url=str(url))
                return got
            if not retryable or attempt == retries:
                self._fail(params, url, outcome)
                return None
            self.log.send(params, Event.RESYNC_FAILURE, url, servip, _error_text(outcome))
            delay = self._retry_delay(params)
            self._event("resync_failed", url=str(url), reason=outcome, retry_in=delay)
            self.result.retries += 1
            if self.settings.stop.wait(delay):
                self._fail(params, url, f"{outcome} (the run ended before the retry)", log=False)
                return None
        return None

    def _retry_delay(self, params: Mapping[str, str]) -> float:
        if self.settings.retry_delay is not None:
            return self.settings.retry_delay
        return number(params, "Resync_Error_Retry_Delay", DEFAULT_RETRY_DELAY)

    def _fail(self, params: Mapping[str, str], url: ProfileUrl | None, outcome: str, log: bool = True) -> None:
        self.result.state, self.result.reason = ResyncState.FAILED, outcome
        if log:
            self.log.send(params, Event.RESYNC_FAILURE, url, err=_error_text(outcome))
        self._event("resync_failed", url=str(url) if url else None, reason=outcome, retry_in=None)

    def _servip(self, url: ProfileUrl) -> str:
        try:
            return self._address(url.host)
        except ResolveError:
            return ""

    def _fetch_profile(self, url: ProfileUrl, servip: str,
                       params: Mapping[str, str]) -> tuple[dict[str, str] | None, str, bool]:
        """(parameters or None, outcome, worth a retry)."""
        fetched = self.fetcher.fetch(url, servip or None)
        if not fetched.ok:
            return None, fetched.outcome, fetched.unreachable or fetched.outcome.startswith("class B")
        try:
            ikm = params.get("IKM_HTTP_Encrypt_Content") or None
            return open_profile(fetched, url, self.phone, ikm, resync=True), fetched.outcome, False
        except ProfileError as e:
            return None, f"class C: {e}", False

    def _upgrade(self, params: dict[str, str]) -> None:
        rule = params["Upgrade_Rule"]
        url = self._rule(rule)
        if url is None:
            self.result.upgrade = "failed"
            self.log.send(params, Event.UPGRADE_FAILURE, err=f"unusable Upgrade_Rule {rule!r}")
            return
        servip = self._servip(url)
        self.result.upgrade_url = str(url)
        self.log.send(params, Event.UPGRADE_REQUEST, url, servip)
        self._event("upgrade_requested", url=str(url))
        fetched = self.fetcher.fetch(url, servip or None, keep=False)
        self._step(f"upgrade {url}: {fetched.outcome}, {fetched.size} bytes")
        if fetched.ok:
            self.result.upgrade = "done"
            self.log.send(params, Event.UPGRADE_SUCCESS, url, servip)
            self._event("upgrade_succeeded", url=str(url))
        else:
            self.result.upgrade = "failed"
            self.log.send(params, Event.UPGRADE_FAILURE, url, servip, _error_text(fetched.outcome))
            self._event("upgrade_failed", url=str(url), reason=fetched.outcome)
