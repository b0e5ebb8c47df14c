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
    rows: list[dict[str, Any]],
    changes: RegistryChanges,
) -> None:
    """Insert or update rows; an identical row is left untouched (no dead tuple, no count).
    One pipelined batch per set of columns, not a round trip per row: a province's registry is
    tens of thousands of rows."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(row), []).append(row)
    cur = conn.cursor()
    for cols, same in by_columns.items():
        cur.executemany(_upsert_query(table, key, list(cols)), same, returning=True)
        while True:
            result = cur.fetchone()
            if result is not None:
                (changes.inserted if result[0] else changes.updated)[table] += 1
            if not cur.nextset():
                break


def _upsert_query(table: str, key: list[str], cols: list[str]) -> sql.Composed:
    """The upsert of one row with these columns, changing nothing when nothing differs."""
    others = [c for c in cols if c not in key]
    return sql.SQL(
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


def _ensure_sites(
    conn: psycopg.Connection, site_ids: list[str], kind: str, changes: RegistryChanges
) -> None:
    """Every id a site of this kind: new ones added, one registered as another kind refused."""
    found = conn.execute("select id, kind from sites where id = any(%s)", (site_ids,))
    known: dict[str, str] = {row[0]: row[1] for row in found}
    for site_id in site_ids:
        if known.get(site_id, kind) != kind:
            raise ValueError(
                f"site {site_id!r} is already registered as {_a(known[site_id])}, not {_a(kind)}"
            )
    new = list(dict.fromkeys(i for i in site_ids if i not in known))
    if new:
        conn.execute("insert into sites (id, kind) select unnest(%s::text[]), %s", (new, kind))
        changes.inserted["sites"] += len(new)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def write_registry(
    conn: psycopg.Connection, rows: dict[str, list[dict[str, Any]]]
) -> RegistryChanges:
    """Write plain rows (as produced by the registry loader) in dependency order.

    Permit limits are replaced per outlet, so a limit removed from the file stops being a rule.
    Other entries absent from the file are kept: readings and the public record refer to them.
    """
    changes = RegistryChanges()
    conn.execute("set constraints all deferred")
    regulators = [{**reg, "notify": Jsonb(reg["notify"])} for reg in rows["regulators"]]
    _upsert(conn, "regulators", ["id"], regulators, changes)
    districts = [{**d, "boundary": json.dumps(d["boundary"])} for d in rows["districts"]]
    _upsert(conn, "districts", ["id"], districts, changes)
    _ensure_sites(conn, [s["id"] for s in rows["stations"]], "station", changes)
    _upsert(conn, "stations", ["id"], rows["stations"], changes)
    _upsert(conn, "enterprises", ["id"], rows["enterprises"], changes)
    _ensure_sites(conn, [o["id"] for o in rows["outlets"]], "outlet", changes)
    _upsert(conn, "outlets", ["id"], rows["outlets"], changes)
    limits = rows["permit_limits"]
    _upsert(conn, "permit_limits", ["outlet_id", "pollutant", "period"], limits, changes)
    if rows["outlets"]:
        # Each listed outlet keeps exactly the limits the file gives it (none if it gives none).
        cur = conn.execute(
            "delete from permit_limits p where p.outlet_id = any(%s) and not exists ("
            " select 1 from unnest(%s::text[], %s::text[], %s::text[]) k(outlet_id, pollutant,"
            " period) where (k.outlet_id, k.pollutant, k.period)"
            " = (p.outlet_id, p.pollutant, p.period))",
            (
                [o["id"] for o in rows["outlets"]],
                [lim["outlet_id"] for lim in limits],
                [lim["pollutant"] for lim in limits],
                [lim["period"] for lim in limits],
            ),
        )
        changes.deleted["permit_limits"] += cur.rowcount
    _upsert(conn, "devices", ["id"], rows["devices"], changes)
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
