"""DHCPv4 pure cores: wire codec, option encoders, device classification (no I/O)."""
