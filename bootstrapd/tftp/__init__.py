"""The TFTP core (RFC 1350, 2347-2349, 7440): packets, option negotiation, the session machine."""
