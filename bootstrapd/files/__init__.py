"""The file service's pure core: the jail, the phone's name macros, device identification, profile rendering,
gzip and encryption. TFTP (`bootstrapd.tftp` + `bootstrapd.transport.tftp`) and HTTP(S)
(`bootstrapd.transport.http`) are two shells over one resolver, so a name means the same on both."""
