"""docker-compose.yml and the Dockerfile agree with the repository and the real CLI."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import sunlight.cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# Images tagged like "name:1.2.3", "name:2.17.2-pg16", "registry/name:3.12.8-slim" (a digit first).
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[0-9][A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?$")
SHELL_SPLIT = re.compile(r"&&|\|\||;")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Its services by name."""
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _words(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def sunlight_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The argument lists a service passes to ``sunlight`` (without the word ``sunlight``)."""
    command = _words(service.get("command", []))
    entrypoint = _words(service["entrypoint"]) if "entrypoint" in service else None
    if entrypoint is None:  # the image's ENTRYPOINT ["sunlight"] receives the command
        return [command] if "build" in service else []
    if entrypoint[-2:] == ["sh", "-c"] or entrypoint[-1:] == ["-c"]:
        script = " ".join(command)
        words = [shlex.split(part) for part in SHELL_SPLIT.split(script)]
        return [w[1:] for w in words if w and Path(w[0]).name == "sunlight"]
    full = [*entrypoint, *command]
    return [full[1:]] if Path(full[0]).name == "sunlight" else []


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    """The stack has the database, broker, migration, ingest, API and simulator services."""
    assert set(services) >= {"db", "mqtt", "migrate", "ingest", "api", "simulator"}


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Each service names an image with an explicit version tag: no 'latest', no bare name."""
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        assert PINNED.match(image), f"{name}: image {image!r} is not pinned to a version"
        assert not image.endswith(":latest"), name


def test_built_image_carries_the_project_version(services: dict[str, dict[str, Any]]) -> None:
    """Services built from this repository tag the image with pyproject's version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {s["image"] for s in services.values() if "build" in s}
    assert built == {f"sunlight:{version}"}


def test_images_match_the_brief(services: dict[str, dict[str, Any]]) -> None:
    """The database is TimescaleDB on PostgreSQL 16; the broker is Eclipse Mosquitto 2."""
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["db"]["image"].endswith("-pg16")
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto:2.")


def test_mounted_repository_paths_exist(services: dict[str, dict[str, Any]]) -> None:
    """Every bind mount and build context taken from the repository exists."""
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source", "") if volume.get("type") == "bind" else ""
            else:
                source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                path = (ROOT / source).resolve() if source.startswith(".") else Path(source)
                assert path.exists(), f"{name}: mounts {source}, which does not exist"
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (ROOT / context / dockerfile).is_file(), name


def test_commands_use_real_subcommands(services: dict[str, dict[str, Any]]) -> None:
    """The first word after 'sunlight' in every service command is a subcommand of the CLI."""
    commands = set(_subparsers(sunlight.cli.build_parser()))
    assert commands, "sunlight.cli.build_parser() has no subcommands"
    for name, service in services.items():
        if "build" not in service:
            continue
        invocations = sunlight_invocations(service)
        assert invocations, f"{name}: runs the Sunlight image without a sunlight command"
        for args in invocations:
            assert args, f"{name}: 'sunlight' without a subcommand"
            assert args[0] in commands, f"{name}: 'sunlight {args[0]}' is not a subcommand"


def test_commands_parse(services: dict[str, dict[str, Any]]) -> None:
    """Each whole service command (e.g. 'registry load FILE') is accepted by the CLI parser."""
    parser = sunlight.cli.build_parser()
    for name, service in services.items():
        for args in sunlight_invocations(service):
            try:
                parser.parse_args(args)
            except SystemExit:  # argparse's way of saying no
                pytest.fail(f"{name}: 'sunlight {' '.join(args)}' does not parse")


def test_the_migration_loads_the_shipped_registry(services: dict[str, dict[str, Any]]) -> None:
    """migrate runs 'db migrate' then 'registry load' of a file the image contains."""
    invocations = sunlight_invocations(services["migrate"])
    assert invocations[0] == ["db", "migrate"]
    assert invocations[1][:2] == ["registry", "load"]
    in_image = Path(invocations[1][2])
    assert in_image.parts[:2] == ("/", "app")  # WORKDIR /app holds a copy of the repository
    assert (ROOT / in_image.relative_to("/app")).is_file()


def test_sunlight_services_reach_db_and_broker(services: dict[str, dict[str, Any]]) -> None:
    """Every Sunlight service gets the database and broker URLs of the compose network."""
    for name, service in services.items():
        if "build" not in service:
            continue
        env = service["environment"]
        assert re.fullmatch(
            r"postgresql://sunlight:[^@]+@db:5432/sunlight", env["SUNLIGHT_DATABASE_URL"]
        ), name
        assert env["SUNLIGHT_MQTT_URL"] == "mqtt://mqtt:1883", name
    api = services["api"]
    assert api["environment"]["SUNLIGHT_API_HOST"] == "0.0.0.0"
    assert any(str(p).endswith("8000:8000") for p in api["ports"])


def test_dependencies_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    """depends_on names existing services, with conditions those services can satisfy."""
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for other, spec in depends.items():
            assert other in services, f"{name} depends on unknown {other}"
            condition = spec["condition"]
            assert condition in allowed, name
            if condition == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}'s health"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("ingest", "api", "simulator"):
        migrate = services[name]["depends_on"]["migrate"]
        assert migrate["condition"] == "service_completed_successfully", name
    assert services["migrate"]["restart"] == "no"


def test_broker_requires_the_generated_accounts(services: dict[str, dict[str, Any]]) -> None:
    """Mosquitto listens on 1883, refuses anonymous clients and reads the password file and
    ACL that the broker-auth service writes from the registry into the shared volume."""
    lines = {
        line.strip()
        for line in (ROOT / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "listener 1883" in lines
    assert "allow_anonymous false" in lines
    assert "allow_anonymous true" not in lines
    assert "password_file /mosquitto/config/auth/passwd" in lines
    assert "acl_file /mosquitto/config/auth/acl" in lines
    assert "mqtt-auth:/mosquitto/config/auth:ro" in services["mqtt"]["volumes"]
    writer = services["broker-auth"]
    assert _words(writer["command"])[:2] == ["registry", "broker-auth"]
    assert "mqtt-auth:/auth" in writer["volumes"]
    assert services["mqtt"]["depends_on"]["broker-auth"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("ingest", "hj212-gateway", "simulator"):
        env = services[name]["environment"]
        assert env["SUNLIGHT_MQTT_ACCOUNT"].startswith("sunlight-"), name
        assert env["SUNLIGHT_MQTT_CREDENTIALS_FILE"] == "/auth/credentials.yaml", name
        assert "mqtt-auth:/auth:ro" in services[name]["volumes"], name


def test_dockerfile_is_pinned_non_root_and_runs_sunlight() -> None:
    """The image starts from a pinned python:3.12 slim, runs as a user, entrypoint sunlight."""
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert PINNED.match(base)
    assert base.startswith("python:3.12.")
    assert "slim" in base
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["sunlight"\]$', text, flags=re.MULTILINE)
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", text)


def test_dockerignore_keeps_what_the_image_needs() -> None:
    """The build context leaves out local state but keeps pyproject, README and examples."""
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env"} <= ignored
    assert not ignored & {"pyproject.toml", "README.md", "examples", "sunlight", "sensors_sim"}
