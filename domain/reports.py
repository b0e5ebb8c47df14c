"""Citizen reports as pure logic: categories, tracking codes, proof of work, routing a point to
its district, and photos re-encoded without their metadata. No I/O: bytes and values in, values
out."""

from __future__ import annotations

import hashlib
import io
import math
import secrets
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from domain.errors import SunlightError, ValidationError
from domain.geo import distance_m


class Category(StrEnum):
    """What the resident saw, smelled or heard."""

    SMOKE = "smoke"
    ODOUR = "odour"
    WATER = "water"  # discolouration, foam, dead fish: anything wrong in a river or canal
    NOISE = "noise"
    DUST = "dust"
    OTHER = "other"


CATEGORY_LABELS: Final[dict[Category, tuple[str, str]]] = {
    Category.SMOKE: ("Smoke", "烟雾"),
    Category.ODOUR: ("Odour", "异味"),
    Category.WATER: ("Water discolouration", "水体变色"),
    Category.NOISE: ("Noise", "噪声"),
    Category.DUST: ("Dust", "扬尘"),
    Category.OTHER: ("Other", "其他"),
}


class Status(StrEnum):
    """Where a report stands; every change is made by a public reply."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    UNFOUNDED = "unfounded"
    MERGED = "merged"  # part of an episode Sunlight already tracks


STATUS_LABELS: Final[dict[Status, tuple[str, str]]] = {
    Status.OPEN: ("Awaiting the office", "等待处理"),
    Status.CONFIRMED: ("Confirmed", "已核实"),
    Status.UNFOUNDED: ("Unfounded", "查无实据"),
    Status.MERGED: ("Merged into an episode", "已并入超标事件"),
}

# Public coordinates are rounded to 3 decimals (about 110 m north–south): a report made with
# the browser's location from home must not publish the home. Offices see the exact point.
PUBLIC_DECIMALS: Final = 3
TRACKING_CODE_BYTES: Final = 16  # 128 bits: unguessable, 22 URL-safe characters
MAX_POW_DIFFICULTY: Final = 32


def new_tracking_code() -> str:
    """The code in the reporter's tracking link."""
    return secrets.token_urlsafe(TRACKING_CODE_BYTES)


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def public_position(lon: float, lat: float) -> tuple[float, float]:
    return round(lon, PUBLIC_DECIMALS), round(lat, PUBLIC_DECIMALS)


def due_at(received_at: datetime, deadline_minutes: int) -> datetime:
    """When the office's first reply is due."""
    return received_at + timedelta(minutes=deadline_minutes)


# --- proof of work -------------------------------------------------------------------------
# Hashcash without a third party: the server issues a random nonce and a difficulty d; the
# client finds a string s such that SHA-256("<nonce>:<s>") begins with d zero bits. Checking
# costs one hash; finding costs about 2**d, which is nothing for one person and a lot for a
# script filing thousands of reports. The nonce is stored and spent once (store.reports).


class ProofOfWorkError(ValidationError):
    """The solution does not meet the challenge."""

    code = "invalid_proof_of_work"


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def pow_digest(nonce: str, solution: str) -> bytes:
    return hashlib.sha256(f"{nonce}:{solution}".encode()).digest()


def check_proof_of_work(nonce: str, solution: str, difficulty: int) -> None:
    """Raise ``ProofOfWorkError`` unless ``solution`` solves the challenge."""
    if not solution or len(solution) > 64 or not solution.isascii():
        raise ProofOfWorkError("proof of work: the solution must be 1–64 ASCII characters")
    if leading_zero_bits(pow_digest(nonce, solution)) < difficulty:
        raise ProofOfWorkError(
            f"proof of work: SHA-256 of '<nonce>:<solution>' must begin with {difficulty} zero"
            " bits; fetch a challenge and solve it"
        )


def solve_proof_of_work(nonce: str, difficulty: int) -> str:
    """What the map's script does, for tests and scripted clients: count until it works."""
    for n in range(1 << (difficulty + 8)):
        if leading_zero_bits(pow_digest(nonce, str(n))) >= difficulty:
            return str(n)
    raise RuntimeError("no solution found")  # probability about e**-256


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Area:
    """A district as routing needs it: its office and its outline (GeoJSON Polygon geometry)."""

    id: str
    regulator_id: str
    boundary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Placement:
    """The district containing a point (None outside all), and the nearest district either way."""

    district_id: str | None
    regulator_id: str | None
    nearest_id: str | None
    nearest_regulator_id: str | None


def place_point(lon: float, lat: float, areas: Iterable[Area]) -> Placement:
    """Which district contains (lon, lat). On a shared edge the first district by id wins, so
    the same point always goes to the same office."""
    from shapely.geometry import Point, shape

    point = Point(lon, lat)
    best: tuple[float, str, str] | None = None
    for area in sorted(areas, key=lambda a: a.id):
        polygon = shape(area.boundary)
        if polygon.covers(point):
            return Placement(area.id, area.regulator_id, area.id, area.regulator_id)
        distance = float(polygon.distance(point))
        if best is None or distance < best[0]:
            best = (distance, area.id, area.regulator_id)
    if best is None:
        return Placement(None, None, None, None)
    return Placement(None, None, best[1], best[2])


def nearest(
    lon: float, lat: float, rows: Sequence[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """The ``count`` rows (with lon, lat) nearest to the point, each with ``distance_m``."""
    ranked = sorted(
        ({**r, "distance_m": distance_m(lon, lat, r["lon"], r["lat"])} for r in rows),
        key=lambda r: r["distance_m"],
    )
    return ranked[:count]


def bearing_deg(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Initial bearing from the first point to the second, degrees clockwise from north."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


COMPASS: Final = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def compass_point(bearing: float) -> str:
    """One of eight compass points: a resident thinks 'the plant to the north-west'."""
    return COMPASS[int((bearing % 360.0 + 22.5) // 45) % 8]


# --- photos -------------------------------------------------------------------------------


class PhotoTooLarge(SunlightError):
    status = 413
    code = "photo_too_large"


class NotAnImage(SunlightError):
    status = 415
    code = "not_an_image"


ACCEPTED_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "GIF", "MPO"})
MAX_PIXELS: Final = 40_000_000  # a 40-megapixel phone photo; beyond it is a decompression bomb
MAX_SIDE: Final = 2048  # what is kept: enough to see smoke, small enough to serve to everyone


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo as Sunlight keeps it: re-encoded JPEG, no EXIF, GPS, XMP or ICC metadata."""

    content_type: str
    data: bytes
    width: int
    height: int


def reencode_photo(data: bytes, *, max_bytes: int) -> Photo:
    """Check ``data`` is a photo within the limits and return it re-encoded.

    Only the pixels survive: the image is decoded, turned upright by its EXIF orientation,
    scaled to at most ``MAX_SIDE`` pixels a side and saved as a fresh JPEG, so nothing of the
    original file (camera, time, GPS position, thumbnails) reaches the public record.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise PhotoTooLarge(f"photo: {len(data)} bytes; at most {max_bytes} bytes are accepted")
    if not data:
        raise NotAnImage("photo: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ACCEPTED_FORMATS:
                    raise NotAnImage(
                        f"photo: {probe.format} is not accepted; send JPEG, PNG, WebP or GIF"
                    )
                if probe.width * probe.height > MAX_PIXELS:
                    raise PhotoTooLarge(
                        f"photo: {probe.width}×{probe.height} pixels; at most {MAX_PIXELS}"
                    )
                probe.seek(0)  # the first frame of an animation
                image = ImageOps.exif_transpose(probe)
                image = image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoTooLarge(f"photo: more than {MAX_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise NotAnImage("photo: not an image Sunlight can read (JPEG, PNG, WebP, GIF)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise NotAnImage(f"photo: the image data is damaged ({exc})") from None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return Photo("image/jpeg", out.getvalue(), image.width, image.height)
