"""The error of an export that cannot be done."""

__all__ = ["UnsupportedExport"]


class UnsupportedExport(ValueError):
    """A model or format combination that cannot be exported; the message, one line, names the part and
    why."""
