"""Writing the registry: upserts that change nothing when nothing changed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb


@dataclass
class RegistryChanges:
    """What a load did, per table: rows inserted, updated, deleted."""

    inserted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> bool:
        return bool(+self.inserted or +self.updated or +self.deleted)


def _upsert(
    conn: psycopg.Connection,
    table: str,
    key: list[str],
    row: dict[str, Any],
    changes: RegistryChanges,
) -> None:
    """Insert or update one row; an identical row is left untouched (no dead tuple, no count)."""
    cols = list(row)
    others = [c for c in cols if c not in key]
    query = sql.SQL(
        "insert into {table} ({cols}) values ({vals}) on conflict ({key}) do update set {sets}"
        " where ({old}) is distinct from ({new}) returning (xmax = 0) as inserted"
    ).format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        sets=sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in others
        ),
        old=sql.SQL(", ").join(sql.Identifier(table, c) for c in others),
        new=sql.SQL(", ").join(sql.SQL("excluded.{c}").format(c=sql.Identifier(c)) for c in others),
    )
    result = conn.execute(query, row).fetchone()
    if result is None:
        return
    (changes.inserted if result[0] else changes.updated)[table] += 1


def _ensure_site(
    conn: psycopg.Connection, site_id: str, kind: str, changes: RegistryChanges
) -> None:
    row = conn.execute("select kind from sites where id = %s", (site_id,)).fetchone()
    if row is None:
        conn.execute("insert into sites (id, kind) values (%s, %s)", (site_id, kind))
        changes.inserted["sites"] += 1
    elif row[0] != kind:
        raise ValueError(f"site {site_id!r} is already registered as a {row[0]}, not a {kind}")


def write_registry(
    conn: psycopg.Connection, rows: dict[str, list[dict[str, Any]]]
) -> RegistryChanges:
    """Write plain rows (as produced by the registry loader) in dependency order.

    Permit limits are replaced per outlet, so a limit removed from the file stops being a rule.
    Other entries absent from the file are kept: readings and the public record refer to them.
    """
    changes = RegistryChanges()
    conn.execute("set constraints all deferred")
    for reg in rows["regulators"]:
        _upsert(conn, "regulators", ["id"], {**reg, "notify": Jsonb(reg["notify"])}, changes)
    for dist in rows["districts"]:
        _upsert(
            conn, "districts", ["id"], {**dist, "boundary": json.dumps(dist["boundary"])}, changes
        )
    for station in rows["stations"]:
        _ensure_site(conn, station["id"], "station", changes)
        _upsert(conn, "stations", ["id"], station, changes)
    for enterprise in rows["enterprises"]:
        _upsert(conn, "enterprises", ["id"], enterprise, changes)
    for outlet in rows["outlets"]:
        _ensure_site(conn, outlet["id"], "outlet", changes)
        _upsert(conn, "outlets", ["id"], outlet, changes)
    limits_by_outlet: dict[str, list[dict[str, Any]]] = {o["id"]: [] for o in rows["outlets"]}
    for limit in rows["permit_limits"]:
        limits_by_outlet[limit["outlet_id"]].append(limit)
        _upsert(conn, "permit_limits", ["outlet_id", "pollutant", "period"], limit, changes)
    for outlet_id, limits in limits_by_outlet.items():
        keep = [f"{lim['pollutant']}/{lim['period']}" for lim in limits]
        cur = conn.execute(
            "delete from permit_limits where outlet_id = %s"
            " and not (pollutant || '/' || period = any(%s))",
            (outlet_id, keep),
        )
        changes.deleted["permit_limits"] += cur.rowcount
    for device in rows["devices"]:
        _upsert(conn, "devices", ["id"], device, changes)
    return changes


def list_devices(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every device with the keys ingest stamps on its readings and the medium it measures."""
    cur = conn.execute(
        """
        select d.id, d.key as device_key, s.key as site_key, s.id as site_id,
               case when s.kind = 'station' then 'ambient'
                    when o.kind = 'gas' then 'flue_gas' else 'wastewater' end as medium,
               d.mn, d.hj212_password, d.timezone
        from devices d
        join sites s on s.id = d.site_id
        left join outlets o on o.id = s.id
        """
    )
    cols = [c.name for c in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
