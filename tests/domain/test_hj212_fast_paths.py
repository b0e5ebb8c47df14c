"""The ingest hot path's shortcuts answer exactly as the full checks they stand in for.

Each shortcut (the CP area read without a second pass over its values, the one-regex value
check, the cached DataTime, the cached unit resolution in ``validate_value``) is compared with
the checking path on generated input: same result, or the same error with the same reason and
message.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import hj212, validation
from domain.errors import ValidationError
from domain.hj212 import Hj212Error, parse_data_time
from domain.pollutants import Medium
from domain.readings import Flag, Period

NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)
CST = timedelta(hours=8)


def outcome(fn: object, *args: object, **kwargs: object) -> object:
    """The value, or (error type, reason, message): what a caller can observe."""
    try:
        return fn(*args, **kwargs)  # type: ignore[operator]
    except ValidationError as exc:
        return (type(exc), exc.reason, str(exc))


# CP areas built from the pieces that matter: names, separators, '#', '&', spaces, digits.
_CP_PIECES = st.sampled_from(
    [
        *("a21026", "a34013", "-", "Avg", "Flag", "Rtd", "DataTime", "RtdInterval", "=", ";"),
        *(",", "&", "#", "##", " ", "N", "12.5", "-3", "20240601120000", "x_y", "a21026-Avg=1"),
        "é",
    ]
)
CP_TEXTS = st.lists(_CP_PIECES, max_size=24).map("".join)


@settings(max_examples=600, deadline=None)
@given(CP_TEXTS)
def test_cp_area_read_once_answers_as_checked_twice(text: str) -> None:
    fast = outcome(hj212._parse_cp, text)
    checked = outcome(hj212._parse_cp, text, check_values=True)
    assert fast == checked


@pytest.mark.parametrize(
    "text",
    [
        "DataTime=20240601120000;a21026-Avg=1.5,a21026-Flag=N",
        "a21026-Avg=1=2,a21026-Flag=N",  # '=' inside a value
        "a21026-Avg=1&2",  # '&' inside a value
        "a21026-Avg=1##2",  # the frame header inside a value
        "RtdInterval=30;",
        " ",
    ],
)
def test_cp_area_examples(text: str) -> None:
    assert outcome(hj212._parse_cp, text) == outcome(hj212._parse_cp, text, check_values=True)


VALUES = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x80), max_size=12) | (
    st.lists(st.sampled_from([" ", "#", "##", ";", ",", "=", "&", "a", "1", "\t"]), max_size=8).map(
        "".join
    )
)


@settings(max_examples=600, deadline=None)
@given(VALUES, st.sampled_from([hj212._TOKEN_FORBIDDEN, hj212._CP_FORBIDDEN]))
def test_one_regex_value_check_accepts_only_what_the_walk_accepts(
    value: str, forbidden: frozenset[str]
) -> None:
    assert outcome(hj212._check_value, "V", value, forbidden, "bad_cp") == outcome(
        hj212._walk_value, "V", value, forbidden, "bad_cp"
    )


def _strptime_oracle(text: str, offset: timedelta) -> object:
    """What DataTime parsing did before it was cached: strptime, then UTC."""
    if not hj212._DATA_TIME_RE.fullmatch(text):
        return "bad_datatime"
    try:
        local = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=hj212.timezone(offset))
    except ValueError:
        return "bad_datatime"
    try:
        return local.astimezone(UTC)
    except OverflowError:
        return "overflow"


DATA_TIMES = st.from_regex(r"[0-9]{14}", fullmatch=True) | st.builds(
    lambda d: d.strftime("%Y%m%d%H%M%S"),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
)


@settings(max_examples=800, deadline=None)
@given(DATA_TIMES, st.sampled_from([CST, timedelta(0), timedelta(hours=-8)]))
def test_cached_data_time_matches_strptime(text: str, offset: timedelta) -> None:
    expected = _strptime_oracle(text, offset)
    far_future = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)  # nothing is in the future
    try:
        got: object = parse_data_time(text, offset, far_future)
    except ValidationError as exc:
        got = exc.reason
    if expected == "bad_datatime":
        assert got == "bad_datatime"
    elif expected == "overflow":
        assert got in ("timestamp_out_of_range", "future_timestamp")
    else:
        assert isinstance(expected, datetime)
        assert got == (expected if expected >= validation.EARLIEST else "timestamp_out_of_range")


@pytest.mark.parametrize(
    ("text", "offset", "reason"),
    [
        ("00010101000000", CST, "timestamp_out_of_range"),
        ("99991231235959", timedelta(hours=-8), "future_timestamp"),
    ],
)
def test_data_time_outside_the_utc_calendar_is_a_rejection_not_a_crash(
    text: str, offset: timedelta, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_data_time(text, offset, NOW)
    assert caught.value.reason == reason
    assert not isinstance(caught.value, Hj212Error) or caught.value.reason == reason


NAMES = st.sampled_from(["so2", "SO2", " nox ", "pm2.5", "temperature", "o3", "cod", "nope"]) | (
    st.none() | st.integers()
)
UNITS = st.sampled_from(["mg/m3", "ug/m3", "µg/m³", "ppm", "ppb", "%", "degC", "℃", "kPa", "x"])
NUMBERS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.booleans()
    | st.none()
    | st.just("1.5")
)


@settings(max_examples=1500, deadline=None)
@given(NAMES, NUMBERS, UNITS | st.none(), st.sampled_from(list(Medium)))
def test_cached_value_validation_matches_the_full_path(
    name: object, value: object, unit: object, medium: Medium
) -> None:
    args = {
        "pollutant": name,
        "value": value,
        "unit": unit,
        "flag": Flag.NORMAL,
        "time": NOW,
        "period": Period.MINUTE,
        "medium": medium,
    }
    full = outcome(validation._validate_value, **args)
    for _ in range(2):  # the second call may answer from the cache the first one filled
        got = outcome(validation.validate_value, **args)
        if isinstance(full, tuple) and isinstance(full[-1], float) and math.isnan(full[-1]):
            continue  # unreachable (NaN is refused) but NaN != NaN would hide it
        assert got == full


def test_a_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validation.validate_value(
            pollutant="so2",
            value=1.0,
            unit="mg/m3",
            flag=Flag.NORMAL,
            time=datetime(2024, 6, 1, 12, 0),  # naive: the fault under test
            period=Period.MINUTE,
            medium=Medium.FLUE_GAS,
        )
