"""HJ 212-2017 frames arriving on ``sunlight/v1/devices/{device}/hj212``: one frame a message.

The frame must come from the device the topic names (its MN) with the registry's password;
values under codes Sunlight does not know are kept apart, never rejected with the frame.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import ValidationError
from domain.hj212 import Hj212Error, frame_readings, parse_frame
from ingest.devices import DeviceInfo
from ingest.payloads import Parsed, Rejection, Unknown, check_age


def parse_hj212_payload(payload: bytes, device: DeviceInfo, now: datetime) -> Parsed:
    try:
        frame = parse_frame(payload)
    except Hj212Error as exc:
        return Parsed(rejections=[Rejection("", f"hj212_{exc.reason}", str(exc))])
    if device.mn is None:
        return Parsed(
            rejections=[Rejection("", "mn_mismatch", f"device {device.id} has no MN registered")]
        )
    if frame.mn != device.mn:
        return Parsed(
            rejections=[
                Rejection("", "mn_mismatch", f"frame MN {frame.mn!r} is not {device.id}'s MN")
            ]
        )
    if device.hj212_password is not None and frame.pw != device.hj212_password:
        return Parsed(rejections=[Rejection("", "bad_password", f"wrong PW for MN {frame.mn}")])
    try:
        result = frame_readings(frame, medium=device.medium, tz_offset=device.tz_offset, now=now)
        if result.time is not None:
            check_age(result.time, now)
    except ValidationError as exc:
        return Parsed(rejections=[Rejection("", exc.reason, str(exc))])
    if result.period is None:
        return Parsed(rejections=[Rejection("", "not_data", f"CN {frame.cn} carries no readings")])
    assert result.time is not None
    unknown = [
        Unknown(
            time=result.time,
            code=u.code,
            field=u.field,
            value=u.value,
            flag=frame.cp.pollutants.get(u.code, {}).get("Flag"),
        )
        for u in result.unknown
        if u.field != "Flag"
    ]
    return Parsed(
        readings=result.readings,
        rejections=[Rejection(r.code, r.reason, r.detail) for r in result.rejections],
        unknown=unknown,
    )
