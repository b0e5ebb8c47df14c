"""Submitting reports the way the map does: fetch a challenge, solve it, post the form."""

from __future__ import annotations

import io
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from PIL import Image

from domain.reports import solve_proof_of_work
from store.auth import create_token

CONTACT = "resident-4711@example.org"


def solved(client: TestClient) -> dict[str, str]:
    answer = client.post("/api/v1/reports/challenge")
    assert answer.status_code == 201, answer.text
    challenge = answer.json()
    return {
        "challenge": challenge["nonce"],
        "solution": solve_proof_of_work(challenge["nonce"], challenge["difficulty"]),
    }


def submit(
    client: TestClient,
    *,
    lon: float = 116.50,
    lat: float = 40.03,
    category: str = "smoke",
    description: str = "Black smoke from the tall stack since 7 am",
    contact: str | None = None,
    photo: bytes | None = None,
    proof: dict[str, str] | None = None,
) -> Any:
    form: dict[str, Any] = {
        "lon": str(lon),
        "lat": str(lat),
        "category": category,
        "description": description,
        **(proof if proof is not None else solved(client)),
    }
    if contact is not None:
        form["contact"] = contact
    files = {"photo": ("smoke.jpg", photo, "image/jpeg")} if photo is not None else None
    return client.post("/api/v1/reports", data=form, files=files)


def token(database_url: str, regulator_id: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        _, secret = create_token(conn, regulator_id, "test")
    return {"Authorization": f"Bearer {secret}"}


def jpeg_with_exif() -> bytes:
    """A phone-like JPEG: camera make and a GPS position in its EXIF."""
    image = Image.new("RGB", (64, 48), (90, 90, 90))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Industries"  # Make
    exif[0x0131] = "Firmware 1.2.3"  # Software
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (39.0, 51.0, 30.0)
    gps[3] = "E"
    gps[4] = (116.0, 30.0, 0.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()
