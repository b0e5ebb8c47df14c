"""A small HTTP load generator for when ``wrk`` is not installed (and for the CI smoke run):
``connections`` asyncio workers over keep-alive httpx connections, each requesting the next path
as soon as its previous answer arrived, for ``duration_s``; prints one JSON line of figures.

    python -m bench.loadgen spec.json   # {"base", "paths", "connections", "duration_s", "gzip"}

Its own module, so the process that bench.api starts for it imports little.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import httpx


async def run(
    base: str, paths: list[str], connections: int, duration_s: float, gzip: bool = False
) -> dict[str, Any]:
    latencies: list[float] = []
    counts = {"errors": 0, "non2xx": 0, "bytes": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=base,
        limits=limits,
        timeout=30.0,
        headers={"accept-encoding": "gzip" if gzip else "identity"},
    ) as client:
        began = time.perf_counter()
        deadline = began + duration_s

        async def worker(n: int) -> None:
            while time.perf_counter() < deadline:
                path = paths[n % len(paths)]
                n += connections
                t0 = time.perf_counter()
                try:
                    r = await client.get(path)
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                counts["bytes"] += r.num_bytes_downloaded
                if not 200 <= r.status_code < 300:
                    counts["non2xx"] += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3
            if latencies
            else math.nan
        )

    return {
        "requests": len(latencies),
        "duration_s": round(elapsed, 3),
        **counts,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1e3 if latencies else math.nan,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(run(**spec))))


if __name__ == "__main__":
    main()
