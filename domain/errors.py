"""Domain errors. Each carries the HTTP status the API layer answers with."""

from __future__ import annotations


class SunlightError(Exception):
    """Base of every error Sunlight raises on purpose."""

    status: int = 400
    code: str = "invalid"


class ValidationError(SunlightError, ValueError):
    """Input that does not satisfy a rule; ``reason`` is a short machine-readable tag."""

    status = 422

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class UnitError(ValidationError):
    """A unit that is unknown or cannot be converted to the expected one."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="bad_unit")


class NotFound(SunlightError):
    """A thing the caller named does not exist."""

    status = 404
    code = "not_found"
