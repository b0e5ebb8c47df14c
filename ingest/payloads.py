"""The JSON readings payload (docs/payload-format.md): bytes in, readings and rejects out.

A message with a broken envelope is rejected whole; within a sound envelope each value stands
alone, so one bad value never costs the good ones beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from domain.errors import ValidationError
from domain.pollutants import Medium
from domain.readings import Period, Reading
from domain.validation import parse_flag, parse_period, parse_timestamp, value_reading

MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_READINGS: Final = 20_000
DEFAULT_PERIOD: Final = Period.MINUTE
# A reading stamped this long before its arrival is a clock fault (a logger whose clock reset to
# 2000-01-01, say), not data: it would be disclosed as a measurement of decades ago.
MAX_AGE: Final = timedelta(days=3653)


def check_age(ts: datetime, now: datetime) -> datetime:
    """``ts``, unless it is more than ``MAX_AGE`` before ``now``."""
    if ts < now - MAX_AGE:
        raise ValidationError(
            f"timestamp {ts.isoformat()} is more than {MAX_AGE.days} days before"
            f" its arrival ({now.isoformat()}): a device clock fault",
            reason="timestamp_out_of_range",
        )
    return ts


@dataclass(frozen=True, slots=True)
class Rejection:
    """One value (or the whole message, ``where`` = "") that could not be accepted."""

    where: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A value under a code Sunlight has no entry for (HJ 212), kept verbatim."""

    time: datetime
    code: str
    field: str
    value: str
    flag: str | None


@dataclass(frozen=True, slots=True)
class Parsed:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)


def _reject_constant(name: str) -> float:
    raise ValidationError(f"{name} is not a number JSON allows", reason="non_finite_value")


def _loads(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}", reason="too_large"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("payload is not UTF-8", reason="bad_json") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("JSON nested too deeply", reason="bad_json") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"not JSON: {exc}", reason="bad_json") from None
    except ValidationError:
        raise  # NaN or an infinity, refused by _reject_constant
    except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
        raise ValidationError(f"not JSON Sunlight accepts: {exc}", reason="bad_json") from None


def _entries(doc: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (location, entry) pairs of a single or batch payload."""
    if not isinstance(doc, dict):
        raise ValidationError("payload must be a JSON object", reason="bad_envelope")
    if "batch" in doc:
        batch = doc["batch"]
        if not isinstance(batch, list) or not batch:
            raise ValidationError("'batch' must be a non-empty list", reason="bad_envelope")
        out = []
        for i, entry in enumerate(batch):
            if not isinstance(entry, dict):
                raise ValidationError(f"batch[{i}] must be an object", reason="bad_envelope")
            out.append((f"batch[{i}]", {"period": doc.get("period"), **entry}))
        return out
    return [("", doc)]


def parse_json_payload(payload: bytes, medium: Medium, now: datetime) -> Parsed:
    """Validate a JSON payload for a device measuring ``medium``; never raises on bad input."""
    try:
        entries = _entries(_loads(payload))
    except ValidationError as exc:
        return Parsed(rejections=[Rejection("", exc.reason, str(exc))])
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    total = 0
    for where, entry in entries:
        prefix = f"{where}." if where else ""
        try:
            if "ts" not in entry:
                raise ValidationError("missing 'ts'", reason="bad_envelope")
            ts = check_age(parse_timestamp(entry["ts"], now), now)
            raw_period = entry.get("period")
            period = DEFAULT_PERIOD if raw_period is None else parse_period(raw_period)
            values = entry.get("readings")
            if not isinstance(values, list) or not values:
                raise ValidationError("'readings' must be a non-empty list", reason="bad_envelope")
        except ValidationError as exc:
            rejections.append(Rejection(where, exc.reason, str(exc)))
            continue
        total += len(values)
        if total > MAX_READINGS:
            rejections.append(
                Rejection(where, "too_large", f"more than {MAX_READINGS} readings in one message")
            )
            break
        for j, item in enumerate(values):
            try:
                if not isinstance(item, dict):
                    raise ValidationError("each reading must be an object", reason="bad_envelope")
                item_period = item.get("period")
                # ``ts`` is parse_timestamp's UTC instant: the positional form skips re-checking.
                readings.append(
                    value_reading(
                        item.get("pollutant"),
                        item.get("value"),
                        item.get("unit"),
                        parse_flag(item.get("flag")),
                        ts,
                        period if item_period is None else parse_period(item_period),
                        medium,
                    )
                )
            except ValidationError as exc:
                rejections.append(Rejection(f"{prefix}readings[{j}]", exc.reason, str(exc)))
    return Parsed(readings, rejections)
