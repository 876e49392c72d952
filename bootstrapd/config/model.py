"""The site file as a frozen, typed model (spec/site-yaml.md is the contract).

Each field's YAML key is its name unless `key=` says otherwise; its kind (how a scalar is parsed) is
`Annotated[..., KIND]`; `doc=` feeds the JSON Schema. The loader and `bootstrapd schema` both walk these
classes, so this file is the single description of the site file.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Annotated, Any

from bootstrapd.config.types import (
    BLKSIZE,
    COUNT,
    DNS_NAME,
    DOMAIN,
    DURATION,
    HOSTPORT,
    I32,
    IPV4,
    MAC,
    MAC_PREFIX,
    NETWORK,
    OPTION_CODE,
    PATH,
    PORT,
    POSITIVE,
    RANGE,
    U8,
    U16,
    U32,
    VARIABLES,
    WINDOWSIZE,
    WORKERS,
    AddressRange,
    HostPort,
)

IPv4 = Annotated[ipaddress.IPv4Address, IPV4]
Duration = Annotated[int, DURATION]


def meta(doc: str, key: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"doc": doc}
    if key:
        out["key"] = key
    return out


class UnknownDevices(enum.Enum):
    """What to do with a device that no class matched."""

    IGNORE = "ignore"  # no reply at all (counted as drop reason unknown_device)
    LEASE = "lease"  # an address, but never provisioning options 150/159/160


class RawType(enum.Enum):
    """Wire types of `raw_options` and typed vivso sub-options."""

    STRING = "string"
    IP = "ip"
    IPS = "ips"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    BOOL = "bool"
    HEX = "hex"


class RecordType(enum.Enum):
    A = "A"
    AAAA = "AAAA"
    CNAME = "CNAME"
    TXT = "TXT"
    PTR = "PTR"


class LogFormat(enum.Enum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Listen:
    interfaces: tuple[str, ...] = field(metadata=meta("DHCP and DNS serve on these interfaces only"))
    address: IPv4 = field(metadata=meta("this server's address on the staging LAN: DHCP server id, DNS"))
    dns_port: Annotated[int, PORT] = field(default=53, metadata=meta("DNS port (UDP and TCP)"))
    dhcp_port: Annotated[int, PORT] = field(
        default=67, metadata=meta("DHCP server port; clients are then on dhcp_port + 1")
    )


@dataclass(frozen=True)
class Acs:
    """Option 43 for TR-069 ACS discovery (sub-options 1-4)."""

    url: str = field(metadata=meta("sub-option 1: ACS URL"))
    provisioning_code: str | None = field(default=None, metadata=meta("sub-option 2"))
    retry_min_wait: Annotated[int, U16] | None = field(default=None, metadata=meta("sub-option 3, seconds"))
    retry_multiplier: Annotated[int, U16] | None = field(default=None, metadata=meta("sub-option 4"))


@dataclass(frozen=True)
class TypedValue:
    """One sub-option: a code and a value of a declared wire type."""

    code: Annotated[int, U8] = field(metadata=meta("sub-option code"))
    type: RawType = field(metadata=meta("wire type of value"))
    value: Any = field(metadata=meta("the value; hex digits for type hex"))


@dataclass(frozen=True)
class Vivso:
    """Option 125 (RFC 3925): one enterprise's sub-options."""

    enterprise: Annotated[int, U32] = field(default=3561, metadata=meta("IANA enterprise number"))
    suboptions: tuple[TypedValue, ...] = field(default=(), metadata=meta("typed sub-options"))
    hex: str | None = field(default=None, metadata=meta("raw sub-option bytes instead of suboptions"))


@dataclass(frozen=True)
class Options:
    """DHCP options by name (site-yaml.md's table). Unset fields fall through to the layer below."""

    time_offset: Annotated[int, I32] | None = field(default=None, metadata=meta("option 2, seconds"))
    dns_servers: tuple[IPv4, ...] | None = field(default=None, metadata=meta("option 6"))
    log_servers: tuple[IPv4, ...] | None = field(default=None, metadata=meta("option 7"))
    ntp_servers: tuple[IPv4, ...] | None = field(default=None, metadata=meta("option 42"))
    acs: Acs | None = field(default=None, metadata=meta("option 43, TR-069 ACS discovery"))
    tftp_server: str | None = field(default=None, metadata=meta("option 66: IP or host name"))
    bootfile: str | None = field(default=None, metadata=meta("option 67"))
    vivso: Vivso | None = field(default=None, metadata=meta("option 125, RFC 3925"))
    cisco_tftp_servers: tuple[IPv4, ...] | None = field(default=None, metadata=meta("option 150"))
    provisioning_server: str | None = field(default=None, metadata=meta("option 159"))
    provisioning_url: str | None = field(default=None, metadata=meta("option 160, macros allowed"))

    def over(self, below: Options) -> Options:
        """These options layered over `below`: a set field here wins."""
        merged = {
            name: mine if mine is not None else getattr(below, name)
            for name in self.__dataclass_fields__
            for mine in [getattr(self, name)]
        }
        return Options(**merged)


@dataclass(frozen=True)
class Subnet:
    prefix: Annotated[ipaddress.IPv4Network, NETWORK] = field(metadata=meta("the subnet, e.g. 198.18.0.0/23"))
    pools: tuple[Annotated[AddressRange, RANGE], ...] = field(
        default=(), metadata=meta("dynamic ranges 'first-last'")
    )
    router: IPv4 | None = field(default=None, metadata=meta("option 3"))
    options: Options = field(default_factory=Options, metadata=meta("per-subnet options, over the defaults"))


@dataclass(frozen=True)
class Reservation:
    mac: Annotated[str, MAC] = field(metadata=meta("the device's MAC"))
    address: IPv4 = field(metadata=meta("its fixed address"))
    hostname: str | None = field(default=None, metadata=meta("option 12 and its DNS name"))
    class_: str | None = field(default=None, metadata=meta("treat this device as this class", key="class"))


@dataclass(frozen=True)
class Match:
    """All given keys must match; within one key any pattern may match."""

    vendor_class: tuple[str, ...] = field(default=(), metadata=meta("globs on option 60, case-insensitive"))
    mac_prefix: tuple[Annotated[str, MAC_PREFIX], ...] = field(default=(), metadata=meta("OUI or longer"))
    hostname: tuple[str, ...] = field(default=(), metadata=meta("globs on option 12"))


@dataclass(frozen=True)
class DeviceClass:
    name: str = field(metadata=meta("class name, used in logs and metrics"))
    match: Match = field(default_factory=Match, metadata=meta("what makes a device a member"))
    options: Options = field(default_factory=Options, metadata=meta("over subnet and default options"))


@dataclass(frozen=True)
class RawOption:
    code: Annotated[int, OPTION_CODE] = field(metadata=meta("DHCP option code"))
    type: RawType = field(metadata=meta("wire type"))
    value: Any = field(metadata=meta("the value, of the given type"))
    classes: tuple[str, ...] = field(default=(), metadata=meta("send to these classes; empty = everyone"))


@dataclass(frozen=True)
class Dhcp:
    authoritative: bool = field(default=True, metadata=meta("NAK requests for addresses not the client's"))
    lease_time: Duration = field(default=3600, metadata=meta("option 51; T1 = 50 %, T2 = 87.5 %"))
    offer_hold: Duration = field(default=30, metadata=meta("how long an offered address is held"))
    decline_probation: Duration = field(
        default=3600, metadata=meta("how long a DECLINEd address stays out of the pool")
    )
    unknown_devices: UnknownDevices = field(
        default=UnknownDevices.IGNORE, metadata=meta("devices no class matched: ignore | lease")
    )
    allow_other_servers: bool = field(
        default=False, metadata=meta("serve even when another DHCP server answers on the LAN")
    )
    rogue_check_interval: Duration = field(
        default=300, metadata=meta("probe for other DHCP servers this often while serving; 0: only at start")
    )
    rogue_check_wait: Duration = field(
        default=4, metadata=meta("how long a probe listens for OFFERs (dnsmasq pings 3 s first); 0: no probe")
    )
    options: Options = field(default_factory=Options, metadata=meta("defaults for every leased client"))
    subnets: tuple[Subnet, ...] = field(default=(), metadata=meta("subnets served"))
    reservations: tuple[Reservation, ...] = field(default=(), metadata=meta("fixed addresses by MAC"))
    classes: tuple[DeviceClass, ...] = field(default=(), metadata=meta("checked in order; first match wins"))
    raw_options: tuple[RawOption, ...] = field(default=(), metadata=meta("any other option code"))
    workers: Annotated[int, WORKERS] = field(default=0, metadata=meta(
        "DHCP worker processes: 0 serves DHCP in the main process; N >= 1 runs N beside it, each serving the "
        "clients of its RFC 3074 hash buckets from its own part of every pool (applies at restart)"
    ))


class ProfileDevices(enum.Enum):
    """Which devices a profile is rendered for."""

    ANY = "any"  # every device, unknown ones with empty inventory fields
    INVENTORY = "inventory"  # only devices with an inventory row; others get a miss (not_in_inventory)


class Encrypt(enum.Enum):
    """Profile encryption (mpp-bootstrap.md section 6); the key is the inventory row's `key`."""

    NONE = "none"
    AES_256_CBC = "aes-256-cbc"  # `openssl enc -aes-256-cbc -md sha256 -k KEY` (Salted__, EVP_BytesToKey)
    AES_256_CBC_MD5 = "aes-256-cbc-md5"  # the same with MD5 key derivation, for old firmware
    AES128GCM = "aes128gcm"  # RFC 8188 Content-Encoding, IKM = the key's UTF-8 bytes


FilePath = Annotated[str, PATH]  # relative to the YAML file that wrote it; absolute in the model


@dataclass(frozen=True)
class Tftp:
    port: Annotated[int, PORT] = field(default=69, metadata=meta("UDP port of the TFTP server"))
    max_sessions: Annotated[int, POSITIVE] = field(
        default=1000, metadata=meta("concurrent transfers; a request beyond gets ERROR 0 and is counted")
    )
    blksize_max: Annotated[int, BLKSIZE] = field(
        default=1468, metadata=meta("largest block size granted (RFC 2348); 1468 fills a 1500-byte frame")
    )
    windowsize_max: Annotated[int, WINDOWSIZE] = field(
        default=64, metadata=meta("largest window granted (RFC 7440); 1 = lock-step RFC 1350")
    )
    timeout: Annotated[int, POSITIVE] = field(
        default=1, metadata=meta("seconds before a block is sent again, unless the client's timeout option asks")
    )
    retries: Annotated[int, POSITIVE] = field(default=5, metadata=meta("sends of one block before giving up"))
    workers: Annotated[int, U8] | None = field(default=None, metadata=meta(
        "processes serving transfers of big files (over 1 MiB) beside the main loop; null: CPUs minus one "
        "(2 on a 2-CPU host, 0 on one CPU), 0: every transfer in the main loop"))


@dataclass(frozen=True)
class Http:
    port: Annotated[int, PORT] = field(default=80, metadata=meta("TCP port of the HTTP server"))
    idle_timeout: Duration = field(default=30, metadata=meta("close a connection idle this long"))
    max_connections: Annotated[int, POSITIVE] = field(
        default=2000, metadata=meta("concurrent connections; more wait in the listen backlog")
    )
    max_body: Annotated[int, POSITIVE] = field(
        default=65536, metadata=meta("largest request body (a phone's POSTed status), bytes")
    )


@dataclass(frozen=True, kw_only=True)
class Https(Http):
    """HTTP's keys, and the certificate."""

    port: Annotated[int, PORT] = field(default=443, metadata=meta("TCP port of the HTTPS server"))
    cert: FilePath = field(metadata=meta("PEM certificate chain covering the names phones use"))
    key: FilePath = field(metadata=meta("PEM private key of the certificate, unencrypted"))


@dataclass(frozen=True)
class Auth:
    """HTTP Basic authentication for every file (phones send --uid/--pwd of their profile rule)."""

    user: str = field(metadata=meta("user name"))
    password_file: FilePath = field(metadata=meta("file holding the password (first line)"))


@dataclass(frozen=True)
class Profile:
    names: tuple[str, ...] = field(metadata=meta("names in the phone's macros ($PN, $PSN, $MA, $MAU, $MAC)"))
    template: FilePath = field(metadata=meta("Jinja2 template, relative to the site file"))
    devices: ProfileDevices = field(default=ProfileDevices.ANY, metadata=meta("any | inventory"))
    gzip: bool = field(default=False, metadata=meta("gzip the rendered profile (before encryption)"))
    encrypt: Encrypt = field(
        default=Encrypt.NONE, metadata=meta("none | aes-256-cbc | aes-256-cbc-md5 | aes128gcm")
    )


@dataclass(frozen=True)
class Files:
    """The floor's file service (TFTP, HTTP, HTTPS) on listen.address."""

    root: FilePath = field(metadata=meta("static files (firmware loads, fixed profiles): read-only, jailed"))
    tftp: Tftp | None = field(default=None, metadata=meta("TFTP server; omit to disable"))
    http: Http | None = field(default=None, metadata=meta("HTTP server; omit to disable"))
    https: Https | None = field(default=None, metadata=meta("HTTPS server; omit to disable"))
    auth: Auth | None = field(default=None, metadata=meta("HTTP Basic auth for every file"))
    inventory: FilePath | None = field(default=None, metadata=meta("CSV, one row per expected device"))
    variables: Annotated[dict[str, str], VARIABLES] = field(
        default_factory=dict, metadata=meta("site-wide template variables")
    )
    profiles: tuple[Profile, ...] = field(default=(), metadata=meta("rendered names; first match wins"))
    render_cache: Annotated[int, U32] = field(default=8 << 20, metadata=meta(
        "bytes of rendered profiles kept in memory, least recently used out first (each entry counts its "
        "body and 1 KiB for its key); 0 renders every request"))


@dataclass(frozen=True)
class Soa:
    mname: Annotated[str, DNS_NAME] = field(default="ns1", metadata=meta("primary name server"))
    rname: Annotated[str, DNS_NAME] = field(default="hostmaster", metadata=meta("mailbox, as a DNS name"))
    refresh: Duration = field(default=3600, metadata=meta("SOA refresh"))
    retry: Duration = field(default=600, metadata=meta("SOA retry"))
    expire: Duration = field(default=86400, metadata=meta("SOA expire"))
    minimum: Duration = field(default=60, metadata=meta("negative-answer TTL"))


@dataclass(frozen=True)
class Record:
    name: Annotated[str, DNS_NAME] = field(metadata=meta("owner, relative to the domain unless dotted"))
    type: RecordType = field(metadata=meta("A | AAAA | CNAME | TXT | PTR"))
    value: str = field(metadata=meta("address, name or text"))
    ttl: Duration | None = field(default=None, metadata=meta("overrides dns.ttl"))


@dataclass(frozen=True)
class SrvTarget:
    target: Annotated[str, DNS_NAME] = field(metadata=meta("host name with an A record; '.' = no service"))
    port: Annotated[int, U16] = field(metadata=meta("TCP port"))
    priority: Annotated[int, U16] = field(default=10, metadata=meta("lower is tried first"))
    weight: Annotated[int, U16] = field(default=0, metadata=meta("share within one priority"))


@dataclass(frozen=True)
class SrvService:
    service: Annotated[str, DNS_NAME] = field(metadata=meta("_ciscoprov-https._tls or _ciscoprov-http._tcp"))
    targets: tuple[SrvTarget, ...] = field(metadata=meta("SRV records of this service"))
    ttl: Duration | None = field(default=None, metadata=meta("overrides dns.ttl"))


@dataclass(frozen=True)
class Dns:
    ttl: Duration = field(default=300, metadata=meta("default TTL of every record"))
    soa: Soa = field(default_factory=Soa, metadata=meta("SOA fields"))
    ns: tuple[Annotated[str, DNS_NAME], ...] = field(default=("ns1",), metadata=meta("name servers"))
    records: tuple[Record, ...] = field(default=(), metadata=meta("A, AAAA, CNAME, TXT, PTR records"))
    srv: tuple[SrvService, ...] = field(default=(), metadata=meta("provisioning SRV records"))
    lease_records: bool = field(default=True, metadata=meta("A/PTR records for leased devices"))


class StoreBackend(enum.Enum):
    """Where the leases are kept (site-yaml.md `store.backend`)."""

    SQLITE = "sqlite"  # embedded, `<state_dir>/leases.sqlite3`: one node
    POSTGRESQL = "postgresql"  # a shared database: several nodes may serve one floor from it


@dataclass(frozen=True)
class Store:
    """The lease store. `dsn`/`dsn_file` matter only for postgresql (exactly one of them then)."""

    backend: StoreBackend = field(default=StoreBackend.SQLITE, metadata=meta("sqlite | postgresql"))
    dsn: str | None = field(default=None, metadata=meta("libpq connection string (postgresql)"))
    dsn_file: FilePath | None = field(
        default=None, metadata=meta("file whose first line is the connection string (keeps a password out)")
    )
    node: str | None = field(default=None, metadata=meta("this node's name in the shared store; default: site"))
    partners: tuple[IPv4, ...] = field(
        default=(), metadata=meta("the other nodes' server ids: not rogue DHCP servers")
    )


@dataclass(frozen=True)
class Central:
    """The cross-site inventory: this site's devices and funnel stages also shipped to a PostgreSQL database
    that every site writes (through an outbox in state_dir, never from the packet path)."""

    enabled: bool = field(default=True, metadata=meta("false: keep the settings, ship nothing"))
    dsn: str | None = field(default=None, metadata=meta("libpq connection string of the central database"))
    dsn_file: FilePath | None = field(
        default=None, metadata=meta("file whose first line is the connection string (keeps a password out)")
    )


@dataclass(frozen=True)
class Syslog:
    """The phones' syslog sink (UDP) on listen.address; only senders inside dhcp.subnets are heard."""

    port: Annotated[int, PORT] = field(default=514, metadata=meta("UDP port"))
    rate_limit: Annotated[int, COUNT] = field(
        default=100, metadata=meta("datagrams per second per source; the excess is dropped and counted")
    )
    history: Annotated[int, COUNT] = field(default=50, metadata=meta("messages kept per device"))
    receive_buffer: Annotated[int, POSITIVE] = field(
        default=16 << 20,
        metadata=meta("bytes of socket receive buffer asked for: ~2 s of a 20,000/s flood (SO_RCVBUFFORCE with "
                      "CAP_NET_ADMIN, else capped at net.core.rmem_max)"),
    )


@dataclass(frozen=True)
class Metrics:
    listen: Annotated[HostPort, HOSTPORT] | None = field(
        default=None, metadata=meta("Prometheus exposition address; omit to disable")
    )


@dataclass(frozen=True)
class Logging:
    format: LogFormat = field(default=LogFormat.AUTO, metadata=meta("auto | json | console"))
    level: LogLevel = field(default=LogLevel.INFO, metadata=meta("debug | info | warning | error"))


@dataclass(frozen=True)
class StallAfter:
    """No progress past a stage for this long -> stalled at that stage; null: that stage never stalls.

    One key per stage that can stall (bootstrapd/floor/funnel.py); the terminal stages (resync_succeeded,
    resync_failed, upgrade_succeeded, upgrade_failed) never do, so they have no key.
    """

    offered: Duration | None = field(default=30, metadata=meta("OFFER sent, no REQUEST yet"))
    leased: Duration | None = field(
        default=120, metadata=meta("ACK sent, nothing further (the phone waits a random resync delay)")
    )
    srv_looked_up: Duration | None = field(default=None, metadata=meta("SRV answered, no target looked up"))
    targets_resolved: Duration | None = field(default=None, metadata=meta("SRV target resolved, no fetch"))
    profile_fetched: Duration | None = field(default=300, metadata=meta("profile sent, no resync logged"))
    resync_requested: Duration | None = field(default=120, metadata=meta("resync logged, no result"))
    upgrade_requested: Duration | None = field(default=None, metadata=meta("upgrade logged, no result"))


@dataclass(frozen=True)
class Floor:
    stall_after: StallAfter = field(default_factory=StallAfter, metadata=meta("stall budget per stage"))


@dataclass(frozen=True)
class Site:
    site: str = field(metadata=meta("site name for logs and metric labels"))
    listen: Listen = field(metadata=meta("where bootstrapd serves"))
    domain: Annotated[str, DOMAIN] = field(metadata=meta("option 15 and the DNS zone apex"))
    state_dir: str = field(default="/var/lib/bootstrapd", metadata=meta("the lease database lives here"))
    store: Store = field(default_factory=Store, metadata=meta("the lease store; default: SQLite in state_dir"))
    central: Central | None = field(
        default=None, metadata=meta("the cross-site inventory database; omit: this site reports alone")
    )
    files: Files | None = field(default=None, metadata=meta("the floor's file service; omit: no files"))
    dhcp: Dhcp = field(default_factory=Dhcp, metadata=meta("DHCPv4 service"))
    dns: Dns = field(default_factory=Dns, metadata=meta("authoritative DNS for the domain"))
    syslog: Syslog | None = field(default=None, metadata=meta("the phones' syslog sink; omit: none"))
    metrics: Metrics = field(default_factory=Metrics, metadata=meta("Prometheus"))
    logging: Logging = field(default_factory=Logging, metadata=meta("structured logs"))
    floor: Floor = field(default_factory=Floor, metadata=meta("the device funnel: when a device is stalled"))
