"""Plots of recorded benchmark results, committed beside BENCHMARKS.md.

    python -m bench.plot api     # bench/results/api-{1,4,16}.json -> docs/bench-api.png
    python -m bench.plot rules   # bench/results/rules-{1,4,16}.json -> docs/bench-rules.png
    python -m bench.plot storage # bench/results/storage-*.json -> docs/bench-storage.png

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


def plot_rules(results: list[dict[str, Any]], out: Path) -> None:
    """Seconds to judge one hour (engine and SQL-aggregate floor) per history scale, with the
    10 s target and the engine/floor ratio on each bar (bench.rules)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise SystemExit("no results to plot: run python -m bench.rules first")
    labels = [f"{r['scale']}x\n{r['stored_readings'] / 1e6:.1f} M stored" for r in results]
    xs = list(range(len(results)))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    engine = ax.bar([x - 0.2 for x in xs], [r["engine_s"] for r in results], 0.4, label="engine")
    ax.bar(
        [x + 0.2 for x in xs], [r["floor_s"] for r in results], 0.4, label="SQL aggregate (floor)"
    )
    for bar, r in zip(engine, results, strict=True):
        ax.annotate(
            f"{r['ratio']:.1f}x floor",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(10, color="red", linestyle="dashed", linewidth=1, label="target 10 s")
    ax.set_xticks(xs, labels)
    ax.set_ylabel("seconds to judge one hour")
    first = results[0]
    ax.set_title(
        f"Rules: one hour of {first['outlets']:,} outlets x 4 pollutants "
        f"({first['readings_in_hour'] / 1e6:.1f} M minute readings), {first['date'][:10]}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


STORAGE_TARGETS = {"postgres": 60.0, "timescaledb": 8.0}


def plot_storage(directory: Path, out: Path) -> None:
    """Bytes per stored reading, indexes included, per path and value series, against each
    path's target: plain PostgreSQL as stored, TimescaleDB after compression (bench.storage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(
        (json.loads(p.read_text()) for p in directory.glob("storage-*.json")),
        key=lambda r: (r["path"] != "postgres", r["values"]),
    )
    if not results:
        raise SystemExit("no results to plot: run python -m bench.storage first")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for x, r in enumerate(results):
        timescale = r["path"] == "timescaledb"
        value = r["compressed_bytes_per_reading"] if timescale else r["bytes_per_reading"]
        target = STORAGE_TARGETS[r["path"]]
        ax.bar(x, value, 0.6, color="tab:green" if value <= target else "tab:red")
        ax.hlines(target, x - 0.4, x + 0.4, colors="black", linestyles="dashed", linewidth=1)
        ax.annotate(
            f"{value:.1f} B\n(target ≤ {target:g})",
            (x, max(value, target)),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(
        range(len(results)),
        [
            ("TimescaleDB\ncompressed" if r["path"] == "timescaledb" else "plain\nPostgreSQL")
            + f"\n{r['values']} values"
            for r in results
        ],
        fontsize=8,
    )
    ax.set_ylabel("bytes per reading, indexes included")
    ax.set_ylim(0, max(STORAGE_TARGETS.values()) * 1.2)
    ax.set_title(
        f"Storage: {int(results[0]['readings']):,} minute readings per run, "
        f"{max(r['date'] for r in results)[:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _history_rows(result: dict[str, Any]) -> int:
    rows = result["data"]["rows"]
    return int(rows["readings_hourly"]) + int(rows["judgements"]) + int(rows["readings"])


def _labels(ax: Any, xs: range, width: float, n: int) -> None:
    ax.set_xticks([x + width * (n - 1) / 2 for x in xs])
    ax.set_xticklabels([label for _, label in API_ENDPOINTS], rotation=30, ha="right")


def plot_ingest(directory: Path, out: Path) -> None:
    """Readings/s of the do-nothing subscriber, the storing floors, one and two ingestors
    (bench.ingest's main run), publish-to-queryable latency when paced, and one ingestor's
    rate as history grows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main_run = json.loads((directory / "ingest-main.json").read_text())
    growth = sorted(
        (json.loads(p.read_text()) for p in directory.glob("ingest-growth-*.json")),
        key=lambda r: int(r["history_readings"]),
    )
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    phases = [
        ("ceiling", "do-nothing\nsubscriber", "tab:gray"),
        ("floor", "floor: raw\nCOPY, 1", "silver"),
        ("floor2", "floor: validated\n+ raw COPY, 2", "silver"),
        ("ingest", "one\ningestor", "tab:blue"),
        ("shared", "two ingestors\n($share)", "tab:cyan"),
    ]
    phases = [p for p in phases if p[0] in main_run]  # runs before the floors had none
    rates = [main_run[k]["readings_per_s"] for k, _n, _c in phases]
    bars = ax.bar([n for _k, n, _c in phases], rates, color=[c for _k, _n, c in phases])
    for bar, rate in zip(bars, rates, strict=True):
        ax.annotate(
            f"{rate:,.0f}",
            (bar.get_x() + bar.get_width() / 2, rate),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(30_000, color="red", linestyle="dashed", linewidth=1, label="target 30,000")
    ax.axhline(
        0.8 * main_run["ceiling"]["readings_per_s"],
        color="purple",
        linestyle="dotted",
        linewidth=1,
        label="0.8 of the do-nothing subscriber",
    )
    ax.set_ylabel("readings/s committed (received, for the ceiling)")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("Full speed, 10 values per message")
    ax.legend(fontsize=8)

    ax = axes[1]
    paced_file = directory / "ingest-paced.json"  # a separate run of the paced phase, if any
    paced = (
        json.loads(paced_file.read_text())["paced"] if paced_file.exists() else main_run["paced"]
    )
    ax.bar(
        ["p50", "p99", "max"],
        [paced["latency_p50_ms"], paced["latency_p99_ms"], paced["latency_max_ms"]],
        color="tab:green",
    )
    ax.axhline(1000, color="red", linestyle="dashed", linewidth=1, label="p99 target 1 s")
    ax.set_ylabel("publish → queryable, ms")
    ax.set_title(
        f"Paced at {paced['target_readings_per_s']:,.0f} readings/s ({paced['probes']:,} probes)"
    )
    ax.legend(fontsize=8)

    ax = axes[2]
    if growth:
        xs = [r["history_readings"] / 1e6 for r in growth]
        ax.plot(xs, [r["ingest"]["readings_per_s"] for r in growth], marker="o")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
    ax.set_xlabel("readings already stored, millions (log)")
    ax.set_ylabel("readings/s committed, one ingestor")
    when = f", runs of {growth[0]['date'][:10]}" if growth else ""
    ax.set_title(f"Growth: ingest rate vs history{when}", fontsize=9)
    fig.suptitle(f"Ingest end to end, {main_run['machine']}, {main_run['date'][:10]}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=("api", "rules", "ingest", "storage"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--markdown", action="store_true", help="print the tables instead")
    args = parser.parse_args()
    if args.markdown:
        print(api_tables(load_results(args.benchmark, args.results)))
        return
    out = args.output or ROOT / "docs" / f"bench-{args.benchmark}.png"
    if args.benchmark in ("ingest", "storage"):
        (plot_ingest if args.benchmark == "ingest" else plot_storage)(args.results, out)
        print(f"wrote {out}")
        return
    plot = plot_rules if args.benchmark == "rules" else plot_api
    plot(load_results(args.benchmark, args.results), out)
    print(f"wrote {out}")


def api_tables(results: list[dict[str, Any]]) -> str:
    """The figures of each run as Markdown tables, for BENCHMARKS.md (copied, never typed)."""
    head = " | ".join(f"{r['scale']}x" for r in results)
    lines = [
        "| figure | " + head + " | target | met |",
        "| --- | " + " | ".join("---" for _ in results) + " | --- | --- |",
    ]

    def row(label: str, values: list[str], target: str = "", met: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(values) + f" | {target} | {met} |")

    row(
        "hourly-rollup rows (history)",
        [f"{r['data']['rows']['readings_hourly']:,}" for r in results],
    )
    row("judgement rows", [f"{r['data']['rows']['judgements']:,}" for r in results])
    row("episodes", [f"{r['data']['rows']['episodes']:,}" for r in results])
    row("minute readings", [f"{r['data']['rows']['readings']:,}" for r in results])
    for key, label in (
        ("baseline_stations", "do-nothing app, stations' bytes"),
        *API_ENDPOINTS,
        ("baseline_series_year", "do-nothing app, a year's bytes"),
        ("baseline_map", "do-nothing app, map's bytes"),
        ("stations_gzip", "/stations, gzip"),
        ("map_gzip", "/map, gzip"),
    ):
        target = API_TARGETS_MS.get(key)
        if key == "enterprises_all":
            target = API_TARGETS_MS["enterprises"]
        p99 = [r["scenarios"][key]["p99_ms"] for r in results]
        row(
            f"{label}: req/s",
            [f"{r['scenarios'][key]['rps']:,.0f}" for r in results],
        )
        row(
            f"{label}: p50 / p99 ms",
            [
                f"{r['scenarios'][key]['p50_ms']:,.0f} / {r['scenarios'][key]['p99_ms']:,.0f}"
                for r in results
            ],
            f"p99 ≤ {target}" if target else "",
            ("yes" if all(v <= target for v in p99) else "no") if target else "",
        )
        if "cold_ms" in results[0]["scenarios"][key]:
            row(
                f"{label}: first request (cold) ms",
                [f"{r['scenarios'][key]['cold_ms']:,.0f}" for r in results],
            )
            row(
                f"{label}: one client, warm, median / max ms",
                [
                    f"{r['scenarios'][key]['warm_median_ms']:,.0f}"
                    f" / {r['scenarios'][key]['warm_max_ms']:,.0f}"
                    for r in results
                ],
            )
            row(
                f"{label}: body bytes",
                [f"{r['scenarios'][key]['body_bytes']:,}" for r in results],
            )
    ratios = [r["ratio_stations_to_baseline"] for r in results]
    row(
        "stations ÷ do-nothing throughput",
        [f"{v:.2f}" for v in ratios],
        "≥ 0.5",
        "yes" if all(v >= 0.5 for v in ratios) else "no",
    )
    renders = [r.get("map_render", {}) for r in results]
    if all("median_s" in m for m in renders):
        row(
            "/map in Chromium, median / max s",
            [f"{m['median_s']:.2f} / {m['max_s']:.2f}" for m in renders],
            "≤ 2",
            "yes" if all(m["max_s"] <= 2 for m in renders) else "no",
        )
    row(
        "load average before / after",
        [f"{r['loadavg_start'][0]:.1f} / {r['loadavg_end'][0]:.1f}" for r in results],
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
