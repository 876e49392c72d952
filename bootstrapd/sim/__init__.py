"""Simulated Cisco MPP phones: DHCP, provisioning-server discovery, profile fetch (mpp-bootstrap.md).

Cores without I/O (time and randomness passed in): phone, macros, discovery, srv, dhcp, verdict.
Shells: wire (scapy frames), resolver, fetch, provision, runner (many phones in one process), provserver
(the lab's provisioning server), floor (a whole staging floor in a lab), cli (`bootstrapd simulate`).
"""
