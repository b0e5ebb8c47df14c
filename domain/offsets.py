"""Device clock offsets (``+08:00``): HJ 212 loggers report local time, days follow it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_OFFSET: Final = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_utc_offset(text: str) -> timedelta:
    """'+08:00' → 8 h; raises ``ValueError`` for anything else (settings are not pre-validated)."""
    match = _OFFSET.match(text.strip())
    if match is None:
        raise ValueError(f"not a UTC offset such as +08:00: {text!r}")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return -delta if sign == "-" else delta
