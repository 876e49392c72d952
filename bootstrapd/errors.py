"""The one exception tree (design.md convention 3)."""


class BootstrapdError(Exception):
    """Root of every error bootstrapd raises on purpose."""


class ConfigError(BootstrapdError):
    """The site file is invalid; carries every located diagnostic."""

    def __init__(self, diagnostics: "list[object]") -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class ParseError(BootstrapdError):
    """Bytes that are not a valid message; `offset` is where parsing stopped."""

    def __init__(self, message: str, offset: int = 0) -> None:
        self.offset = offset
        super().__init__(f"{message} (at byte {offset})")


class StoreError(BootstrapdError):
    """The lease store failed to persist or read."""
