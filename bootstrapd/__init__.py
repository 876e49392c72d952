"""bootstrapd: zero-touch DHCP and DNS bootstrap for staging floors of Cisco MPP phones."""

__version__ = "0.1.0"
