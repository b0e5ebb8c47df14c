"""Plots of recorded benchmark results, committed beside BENCHMARKS.md.

    python -m bench.plot api     # bench/results/api-{1,4,16}.json -> docs/bench-api.png

Each panel puts the figures of the 1x, 4x and 16x runs side by side, so growth with the
volume of history (issue 7 §5) reads at a glance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

API_ENDPOINTS = (
    ("stations", "/stations"),
    ("enterprises", "/enterprises"),
    ("enterprises_all", "/enterprises (10,000)"),
    ("series_year", "year of hourly means"),
    ("series_year_uncached", "year, uncached"),
    ("raw_day", "day of minutes"),
    ("map", "/map"),
)
API_TARGETS_MS = {"stations": 50, "enterprises": 50, "series_year": 100, "map": 200}


def load_results(kind: str, directory: Path = RESULTS) -> list[dict[str, Any]]:
    """Every ``<kind>-<scale>.json`` in ``directory``, smallest scale first."""
    found = [json.loads(p.read_text()) for p in directory.glob(f"{kind}-*.json")]
    return sorted(found, key=lambda r: int(r["scale"]))


def plot_api(results: list[dict[str, Any]], out: Path) -> None:
    """p99 latency and throughput per endpoint, beside the do-nothing twin, per scale; the map's
    render time in Chromium; the cold (first-request) build times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise SystemExit("no results to plot: run python -m bench.api first")
    scales = [f"{r['scale']}x\n{_history_rows(r):,} rows" for r in results]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    width = 0.8 / len(results)
    xs = range(len(API_ENDPOINTS))

    ax = axes[0][0]
    for i, r in enumerate(results):
        ax.bar(
            [x + i * width for x in xs],
            [r["scenarios"][k]["p99_ms"] for k, _ in API_ENDPOINTS],
            width,
            label=scales[i].replace("\n", ", "),
        )
    for j, (key, _) in enumerate(API_ENDPOINTS):
        if key in API_TARGETS_MS:
            ax.hlines(API_TARGETS_MS[key], j - 0.1, j + 0.9, colors="red", linestyles="dashed")
    ax.set_yscale("log")
    ax.set_ylabel("p99 latency, ms (log); red: target")
    ax.set_title(f"p99 under {results[0]['connections']} connections")
    _labels(ax, xs, width, len(results))
    ax.legend(fontsize=8)

    ax = axes[0][1]
    for i, r in enumerate(results):
        ax.bar(
            [x + i * width for x in xs],
            [r["scenarios"][k]["rps"] for k, _ in API_ENDPOINTS],
            width,
            label=scales[i].replace("\n", ", "),
        )
    for j, twin in ((0, "baseline_stations"), (3, "baseline_series_year"), (6, "baseline_map")):
        value = max(r["scenarios"][twin]["rps"] for r in results)
        ax.hlines(value, j - 0.1, j + 0.9, colors="black", linestyles="dotted")
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log); dotted: do-nothing app, same bytes")
    ax.set_title("Throughput")
    _labels(ax, xs, width, len(results))

    ax = axes[1][0]
    render = [r.get("map_render", {}) for r in results]
    ax.bar(scales, [m.get("median_s", 0) for m in render], color="tab:green", label="median")
    ax.scatter(scales, [m.get("max_s", 0) for m in render], color="black", zorder=3, label="max")
    ax.axhline(2.0, color="red", linestyle="dashed", label="target 2 s")
    ax.set_ylabel("seconds to markers and clusters drawn")
    ax.set_title("/map in headless Chromium")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    for key, label in API_ENDPOINTS:
        ax.plot(scales, [r["scenarios"][key]["cold_ms"] for r in results], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_ylabel("first request after start, ms (log)")
    ax.set_title("Cold builds (what one rebuild costs)")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"Public API, {results[0]['machine']['cores']} cores / "
        f"{results[0]['machine']['memory_gib']:.0f} GiB, {results[0]['date'][:10]}"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _history_rows(result: dict[str, Any]) -> int:
    rows = result["data"]["rows"]
    return int(rows["readings_hourly"]) + int(rows["judgements"]) + int(rows["readings"])


def _labels(ax: Any, xs: range, width: float, n: int) -> None:
    ax.set_xticks([x + width * (n - 1) / 2 for x in xs])
    ax.set_xticklabels([label for _, label in API_ENDPOINTS], rotation=30, ha="right")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=("api",))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    out = args.output or ROOT / "docs" / f"bench-{args.benchmark}.png"
    plot_api(load_results(args.benchmark, args.results), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
