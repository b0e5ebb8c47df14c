"""The pure parts of citizen reports: proof of work, routing, directions and photos."""

from __future__ import annotations

import hashlib
import io
import warnings

import pytest
from PIL import Image

from domain.reports import (
    Area,
    NotAnImage,
    PhotoTooLarge,
    ProofOfWorkError,
    bearing_deg,
    check_proof_of_work,
    compass_point,
    leading_zero_bits,
    place_point,
    public_position,
    reencode_photo,
    solve_proof_of_work,
)


@pytest.mark.parametrize(
    ("digest", "bits"),
    [
        (bytes([0x80]) + bytes(31), 0),
        (bytes([0x40]) + bytes(31), 1),
        (bytes([0x01]) + bytes(31), 7),
        (bytes([0x00, 0xFF]) + bytes(30), 8),
        (bytes([0x00, 0x00, 0x0F]) + bytes(29), 20),
        (bytes(32), 256),
    ],
)
def test_leading_zero_bits(digest: bytes, bits: int) -> None:
    """Zero bits are counted from the most significant bit of the first byte."""
    assert leading_zero_bits(digest) == bits


def test_proof_of_work_round_trip() -> None:
    """A solution found by counting passes; the same string fails a harder challenge or
    another nonce (most of the time: checked against the real hash)."""
    solution = solve_proof_of_work("n0nce", 12)
    check_proof_of_work("n0nce", solution, 12)
    digest = hashlib.sha256(f"n0nce:{solution}".encode()).digest()
    bits = leading_zero_bits(digest)
    with pytest.raises(ProofOfWorkError):
        check_proof_of_work("n0nce", solution, bits + 1)
    with pytest.raises(ProofOfWorkError, match="1–64 ASCII"):
        check_proof_of_work("n0nce", "x" * 65, 0)
    with pytest.raises(ProofOfWorkError):
        check_proof_of_work("n0nce", "", 0)


SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
NEXT = {"type": "Polygon", "coordinates": [[[1, 0], [2, 0], [2, 1], [1, 1], [1, 0]]]}
AREAS = [Area("b-east", "office-b", NEXT), Area("a-west", "office-a", SQUARE)]


@pytest.mark.parametrize(
    ("point", "district", "nearest"),
    [
        ((0.5, 0.5), "a-west", "a-west"),
        ((1.5, 0.5), "b-east", "b-east"),
        ((1.0, 0.5), "a-west", "a-west"),  # on the shared edge: the first by id
        ((0.0, 0.0), "a-west", "a-west"),  # on a vertex
        ((3.0, 0.5), None, "b-east"),  # outside: the nearest is named for the fallback
        ((-1.0, 0.5), None, "a-west"),
    ],
)
def test_place_point(point: tuple[float, float], district: str | None, nearest: str) -> None:
    """Inside (or on the edge of) a district, that district; outside, none but the nearest."""
    placed = place_point(*point, AREAS)
    assert (placed.district_id, placed.nearest_id) == (district, nearest)


def test_place_point_without_districts() -> None:
    """No districts: nothing contains the point and nothing is nearest."""
    assert place_point(0, 0, []).nearest_id is None


@pytest.mark.parametrize(
    ("to", "compass"),
    [((0.0, 1.0), "N"), ((1.0, 1.0), "NE"), ((1.0, 0.0), "E"), ((0.0, -1.0), "S"),
     ((-1.0, 0.0), "W"), ((-1.0, -1.0), "SW")],
)  # fmt: skip
def test_compass_point(to: tuple[float, float], compass: str) -> None:
    """Directions from the report to a site, in the eight points a resident uses."""
    assert compass_point(bearing_deg(0.0, 0.0, *to)) == compass


def test_public_position_is_rounded() -> None:
    """Published positions keep three decimals (about 100 m)."""
    assert public_position(116.123456, 39.987654) == (116.123, 39.988)


def _png(size: tuple[int, int], mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (10, 20, 30, 128) if mode == "RGBA" else (10, 20, 30)).save(
        out, format="PNG", pnginfo=None
    )
    return out.getvalue()


def test_photo_formats_become_plain_jpeg() -> None:
    """PNG with transparency and an animated GIF become a JPEG of the first frame."""
    photo = reencode_photo(_png((30, 20)), max_bytes=100_000)
    assert (photo.content_type, photo.width, photo.height) == ("image/jpeg", 30, 20)
    assert photo.data[:3] == b"\xff\xd8\xff"
    frames = [Image.new("P", (16, 16), i) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert reencode_photo(out.getvalue(), max_bytes=100_000).width == 16


def test_photo_orientation_is_applied_before_metadata_goes() -> None:
    """A portrait photo stored landscape with an EXIF rotation stays portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 0, 0)).save(out, format="JPEG", exif=exif)
    photo = reencode_photo(out.getvalue(), max_bytes=100_000)
    assert (photo.width, photo.height) == (20, 40)


def test_large_photos_are_scaled_down() -> None:
    """A big photo is kept at most 2048 pixels a side."""
    out = io.BytesIO()
    Image.new("RGB", (4000, 1000), (1, 2, 3)).save(out, format="JPEG")
    photo = reencode_photo(out.getvalue(), max_bytes=10_000_000)
    assert (photo.width, photo.height) == (2048, 512)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a but then nothing",
        b"%PDF-1.7\n" + b"0" * 100,
        _png((8, 8))[:40],  # truncated
    ],
)
def test_non_images_are_refused(data: bytes) -> None:
    """Empty, damaged or non-image files are refused as such (415)."""
    with pytest.raises(NotAnImage) as caught:
        reencode_photo(data, max_bytes=100_000)
    assert caught.value.status == 415


def test_decompression_bomb_is_refused() -> None:
    """A small file declaring a vast image is refused before its pixels are decoded."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.new("1", (10_000, 10_000)).save(out, format="PNG")
    assert len(out.getvalue()) < 100_000
    with pytest.raises(PhotoTooLarge, match="pixels"):
        reencode_photo(out.getvalue(), max_bytes=1_000_000)


def test_too_many_bytes_is_413() -> None:
    """The byte limit is checked first, with the limit named."""
    with pytest.raises(PhotoTooLarge, match="at most 10 bytes") as caught:
        reencode_photo(_png((8, 8)), max_bytes=10)
    assert caught.value.status == 413
