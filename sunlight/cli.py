"""The ``sunlight`` command: one subcommand per process or operator task."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
from pydantic import ValidationError as SettingsError

from domain.errors import SunlightError
from sunlight import logs, memory
from sunlight.settings import Settings, get_settings

logger = logging.getLogger("sunlight")


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so services stop cleanly between batches."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        logger.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def default_registry_file() -> Path:
    """The example registry: shipped inside the package, or beside it in a source checkout
    (where ``python -m sunlight`` imports the package from the working tree)."""
    from importlib.resources import files

    try:
        return Path(str(files("sunlight.examples") / "registry.yaml"))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "examples" / "registry.yaml"


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from store.db import wait_for_database
    from store.schema import migrate

    wait_for_database(settings.database_url)
    applied = migrate(
        settings.database_url,
        storage=settings.storage,
        retention_days=settings.retention_days,
        compress_after_days=settings.compress_after_days,
    )
    print(f"applied migrations {applied}" if applied else "schema is up to date")
    return 0


def cmd_registry_validate(_: Settings, args: argparse.Namespace) -> int:
    from registry.loader import place_in_districts
    from registry.model import read_registry_file

    registry = read_registry_file(args.file)
    place_in_districts(registry, str(args.file))
    devices = sum(1 for _ in registry.devices())
    print(
        f"{args.file}: valid — {len(registry.regulators)} regulators, "
        f"{len(registry.districts)} districts, {len(registry.stations)} stations, "
        f"{len(registry.enterprises)} enterprises, {devices} devices"
    )
    return 0


def cmd_registry_load(settings: Settings, args: argparse.Namespace) -> int:
    from registry.loader import load_registry

    changes = load_registry(settings.database_url, args.file)
    if not changes.changed:
        print(f"{args.file}: no changes")
        return 0
    for label, counter in (
        ("inserted", changes.inserted),
        ("updated", changes.updated),
        ("deleted", changes.deleted),
    ):
        if +counter:
            print(f"{label}: " + ", ".join(f"{t} {n}" for t, n in sorted(counter.items()) if n))
    return 0


def cmd_broker_auth(_: Settings, args: argparse.Namespace) -> int:
    from registry.broker_auth import generate_broker_auth
    from registry.model import read_registry_file

    auth = generate_broker_auth(read_registry_file(args.file), args.out)
    print(
        f"{len(auth.accounts)} broker accounts ({len(auth.added)} added, "
        f"{len(auth.removed)} removed) in {args.out}:\n"
        f"  {auth.password_file.name}, {auth.acl_file.name}: for Mosquitto "
        "(password_file / acl_file)\n"
        f"  {auth.credentials_file.name}: passwords (mode 0600) for devices and services"
    )
    return 0


def cmd_ingest(settings: Settings, _: argparse.Namespace) -> int:
    from ingest.service import Ingestor
    from store.db import wait_for_database

    wait_for_database(settings.database_url)
    Ingestor(settings, stop_event=_stop_on_signals()).run()
    return 0


def cmd_alerts(settings: Settings, args: argparse.Namespace) -> int:
    from alerts.service import run_alerts
    from store.db import wait_for_database

    wait_for_database(settings.database_url)
    run_alerts(settings, stop_event=_stop_on_signals(), interval_s=args.interval)
    return 0


def cmd_gateway(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.gateway import run_gateway
    from store.db import wait_for_database

    wait_for_database(settings.database_url)
    host = args.host or settings.gateway_host
    port = settings.gateway_port if args.port is None else args.port
    run_gateway(settings, host=host, port=port, stop_event=_stop_on_signals())
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.server import HeadDeadline

    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    workers = settings.api_workers if args.workers is None else args.workers
    level = settings.log_level.lower()
    HeadDeadline.head_timeout_s = settings.api_head_timeout_s
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=level, http=HeadDeadline)
    else:
        # Worker processes import the app themselves and read the same SUNLIGHT_* settings.
        uvicorn.run(
            "api.app:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=level,
            http=HeadDeadline,
        )
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from registry.model import read_registry_file
    from sensors_sim.simulator import run

    path = args.registry or settings.registry_file or default_registry_file()
    registry = read_registry_file(path)
    run(
        settings,
        registry,
        speedup=args.speedup,
        duration_s=args.duration,
        seed=args.seed,
        stop_event=_stop_on_signals(),
    )
    return 0


def cmd_aqi(_: Settings, args: argparse.Namespace) -> int:
    import json

    from domain.aqi import compute, parse_args, to_json

    values = parse_args(args.standard, args.values)
    result = compute(args.standard, values, report=args.report, ambient_units=args.ambient_units)
    print(json.dumps(to_json(result), ensure_ascii=False, indent=2))
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from sunlight.up import run_everything

    return run_everything(
        settings,
        data_dir=args.data_dir,
        registry_file=args.registry,
        simulate=not args.no_simulator,
        stop_event=_stop_on_signals(),
    )


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from ingest.replay import replay_dead_letters

    result = replay_dead_letters(
        settings.database_url,
        device_id=args.device,
        reason=args.reason,
        limit=args.limit,
        default_timezone=settings.device_timezone,
    )
    print(
        f"replayed {result.replayed} dead letter(s), {result.readings} reading(s) stored;"
        f" {result.still_rejected} still rejected"
    )
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    from store.auth import create_token
    from store.db import transaction

    with transaction(settings.database_url) as conn:
        token_id, token = create_token(conn, args.regulator, args.label)
    print(f"token {token_id} for {args.regulator} ({args.label}); shown once, keep it secret:")
    print(token)
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from store.auth import revoke_token
    from store.db import transaction

    with transaction(settings.database_url) as conn:
        revoked = revoke_token(conn, args.token_id)
    print(f"token {args.token_id} revoked" if revoked else f"no active token {args.token_id}")
    return 0 if revoked else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sunlight",
        description="Pollution monitoring and disclosure. Configuration: SUNLIGHT_* variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run everything on this machine (database, broker, services)")
    up.add_argument("--data-dir", type=Path, default=None, help="where data persists")
    up.add_argument("--registry", type=Path, default=None, help="registry YAML to load")
    up.add_argument("--no-simulator", action="store_true", help="do not simulate devices")
    up.set_defaults(func=cmd_up)

    db = sub.add_parser("db", help="database tasks").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("migrate", help="apply pending schema migrations").set_defaults(func=cmd_migrate)

    reg = sub.add_parser("registry", help="registry file tasks").add_subparsers(
        dest="registry_command", required=True
    )
    load = reg.add_parser("load", help="validate a registry YAML file and write it")
    load.add_argument("file", type=Path)
    load.set_defaults(func=cmd_registry_load)
    auth = reg.add_parser(
        "broker-auth",
        help="write Mosquitto's password file and ACL: each device publishes only to its topics",
    )
    auth.add_argument("file", type=Path)
    auth.add_argument(
        "--out", type=Path, required=True, help="directory for passwd, acl, credentials"
    )
    auth.set_defaults(func=cmd_broker_auth)
    validate = reg.add_parser("validate", help="validate a registry YAML file only")
    validate.add_argument("file", type=Path)
    validate.set_defaults(func=cmd_registry_validate)

    sub.add_parser("ingest", help="store readings from the broker").set_defaults(func=cmd_ingest)

    dl = sub.add_parser("dead-letters", help="rejected messages").add_subparsers(
        dest="dl_command", required=True
    )
    replay = dl.add_parser("replay", help="re-ingest dead letters whose cause was fixed")
    replay.add_argument("--device", default=None, help="only this device id")
    replay.add_argument("--reason", default=None, help="only this reason, e.g. unknown_device")
    replay.add_argument("--limit", type=int, default=10_000)
    replay.set_defaults(func=cmd_replay)

    tokens = sub.add_parser("tokens", help="regulator API tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    create = tokens.add_parser("create", help="create a token for a regulator office")
    create.add_argument("regulator", help="regulator id from the registry")
    create.add_argument("--label", required=True, help="who holds it (kept private)")
    create.set_defaults(func=cmd_token_create)
    revoke = tokens.add_parser("revoke", help="revoke a token by its number")
    revoke.add_argument("token_id", type=int)
    revoke.set_defaults(func=cmd_token_revoke)

    alerts = sub.add_parser(
        "alerts", help="judge limits, track episodes, notify regulators (one leader at a time)"
    )
    alerts.add_argument("--interval", type=float, default=30.0, help="seconds between job runs")
    alerts.set_defaults(func=cmd_alerts)

    gw = sub.add_parser("hj212-gateway", help="TCP server for HJ 212-2017 data loggers")
    gw.add_argument("--host", default=None)
    gw.add_argument("--port", type=int, default=None)
    gw.set_defaults(func=cmd_gateway)

    api = sub.add_parser("api", help="serve the public API and map")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.add_argument(
        "--workers",
        type=int,
        choices=range(1, 65),
        metavar="N",
        default=None,
        help="worker processes (default SUNLIGHT_API_WORKERS, 1); about one per core",
    )
    api.set_defaults(func=cmd_api)

    aqi = sub.add_parser(
        "aqi",
        help="air-quality index of concentrations, as JSON",
        description="e.g. sunlight aqi --standard hj633 pm25=35@24h so2=650@1h",
    )
    aqi.add_argument("--standard", choices=["hj633", "us-epa"], required=True)
    aqi.add_argument(
        "--report",
        choices=["hourly", "daily"],
        default=None,
        help="HJ 633 report (default: hourly when a 1 h value other than O3 is given)",
    )
    aqi.add_argument(
        "--ambient-units",
        action="store_true",
        help="US EPA: values are in Sunlight's ug/m3 (CO mg/m3), converted to ppm/ppb at 25 °C",
    )
    aqi.add_argument("values", nargs="+", metavar="POLLUTANT=VALUE[@AVERAGING]")
    aqi.set_defaults(func=cmd_aqi)

    sim = sub.add_parser("simulate", help="publish simulated device readings")
    sim.add_argument("--registry", type=Path, default=None)
    sim.add_argument("--speedup", type=float, default=None, help="simulated/wall time")
    sim.add_argument("--duration", type=float, default=None, help="wall seconds, then stop")
    sim.add_argument("--seed", type=int, default=None)
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"sunlight: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, json_lines=settings.log_json, name=args.command)
    memory.return_large_blocks(settings.memory_return_threshold_kib)
    func: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        return func(settings, args)
    except SunlightError as exc:
        print(f"sunlight {args.command}: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        # No traceback for the commonest operator mistake: a database not running or not
        # the one meant (`sunlight up` prints the URL of its own).
        print(
            f"sunlight {args.command}: cannot use the database SUNLIGHT_DATABASE_URL names: "
            f"{str(exc).strip()}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
