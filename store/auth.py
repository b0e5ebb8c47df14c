"""Regulator API tokens and jurisdictions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import psycopg
from psycopg.rows import tuple_row

from domain.errors import NotFound

TOKEN_PREFIX = "slt_"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for: an office and every office below it."""

    regulator_id: str
    token_id: int
    jurisdiction: tuple[str, ...]
    top_level: bool


def create_token(conn: psycopg.Connection, regulator_id: str, label: str) -> tuple[int, str]:
    """A new token for ``regulator_id``; the clear text is returned once and never stored."""
    cur = conn.cursor(row_factory=tuple_row)
    if cur.execute("select 1 from regulators where id = %s", (regulator_id,)).fetchone() is None:
        raise NotFound(f"no regulator {regulator_id!r}")
    secret = secrets.token_urlsafe(32)
    row = cur.execute(
        "insert into regulator_tokens (regulator_id, label, secret_sha256)"
        " values (%s, %s, %s) returning id",
        (regulator_id, label, hashlib.sha256(secret.encode()).digest()),
    ).fetchone()
    assert row is not None
    return row[0], f"{TOKEN_PREFIX}{row[0]}_{secret}"


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    cur = conn.execute(
        "update regulator_tokens set revoked_at = now() where id = %s and revoked_at is null",
        (token_id,),
    )
    return cur.rowcount == 1


def authenticate(conn: psycopg.Connection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    ident, _, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not ident.isdigit() or not secret or len(ident) > 9:
        return None
    cur = conn.cursor(row_factory=tuple_row)
    row = cur.execute(
        "select t.regulator_id, t.secret_sha256, r.parent_id is null from regulator_tokens t"
        " join regulators r on r.id = t.regulator_id where t.id = %s and t.revoked_at is null",
        (int(ident),),
    ).fetchone()
    if row is None:
        return None
    regulator_id, stored, top_level = row
    if not hmac.compare_digest(hashlib.sha256(secret.encode()).digest(), bytes(stored)):
        return None
    return Principal(regulator_id, int(ident), jurisdiction(conn, regulator_id), bool(top_level))


def jurisdiction(conn: psycopg.Connection, regulator_id: str) -> tuple[str, ...]:
    """The office and all its descendants."""
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(
        """
        with recursive tree(id) as (
            select id from regulators where id = %s
            union
            select r.id from regulators r join tree t on r.parent_id = t.id
        )
        select id from tree order by id
        """,
        (regulator_id,),
    ).fetchall()
    return tuple(r[0] for r in rows)
