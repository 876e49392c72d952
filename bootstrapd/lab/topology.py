"""Ready-made topologies: the staging LAN of a phone floor, optionally with a relayed segment.

    server (stg0 198.18.0.1/23) --+-- client1 .. clientN        (eth0, DHCP or static)
                                  +-- relay eth0 198.18.0.2/23
                                        relay (seg1 198.18.2.1/24, forwarding) -- rclient1 ..
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bootstrapd.lab.netns import Host, Lab, Segment

SERVER_ADDR = "198.18.0.1/23"
RELAY_ADDR = "198.18.0.2/23"
SEG1_ADDR = "198.18.2.1/24"
STAGING_NET = "198.18.0.0/23"
SEG1_NET = "198.18.2.0/24"


@dataclass
class StagingLan:
    """Hosts of a staging floor. Clients are DHCP clients (no address) unless given one."""

    lab: Lab
    server: Host
    stg0: Segment
    clients: list[Host] = field(default_factory=list)
    relay: Host | None = None
    seg1: Segment | None = None
    relay_clients: list[Host] = field(default_factory=list)

    def add_client(self, addr: str | None = None, *, name: str | None = None,
                   mac: str | None = None) -> Host:
        """A new host with eth0 on stg0; `addr` (e.g. "198.18.0.200/23") makes it static."""
        host = self.lab.host(name or f"client{len(self.clients) + 1}")
        self.lab.attach(host, self.stg0, "eth0", addr=addr, mac=mac)
        self.clients.append(host)
        return host

    def static_client(self, addr: str, *, name: str | None = None) -> Host:
        """A client with a fixed address on stg0, e.g. a DNS test client."""
        return self.add_client(addr, name=name)

    def add_relay_client(self, addr: str | None = None, *, name: str | None = None,
                         mac: str | None = None) -> Host:
        """A new host with eth0 on seg1; a static one also gets its route to stg0 via the relay."""
        if self.seg1 is None:
            raise ValueError("this staging LAN has no relay segment (staging_lan(relay=True))")
        host = self.lab.host(name or f"rclient{len(self.relay_clients) + 1}")
        self.lab.attach(host, self.seg1, "eth0", addr=addr, mac=mac)
        if addr is not None:
            host.add_route(STAGING_NET, SEG1_ADDR)
        self.relay_clients.append(host)
        return host


def staging_lan(lab: Lab, clients: int = 2, relay: bool = False, relay_clients: int = 1) -> StagingLan:
    """Build the staging LAN in `lab`: server + `clients` DHCP clients, and a relayed seg1 if asked."""
    server = lab.host("server")
    lan = StagingLan(lab, server, lab.segment("stg0", server, SERVER_ADDR))
    for _ in range(clients):
        lan.add_client()
    if relay:
        lan.relay = lab.host("relay")
        lab.attach(lan.relay, lan.stg0, "eth0", addr=RELAY_ADDR)
        lan.seg1 = lab.segment("seg1", lan.relay, SEG1_ADDR)
        lan.relay.enable_forwarding()
        server.add_route(SEG1_NET, RELAY_ADDR)
        for _ in range(relay_clients):
            lan.add_relay_client()
    return lan
