"""The Dockerfile, checked against the project without a container runtime: what it copies exists, the
command it runs is the installed entry point and parses as `serve`, the port it exposes is the one serve
listens on and the health check calls, and it does not run as root."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path

from stripe_sync_core.config import SyncConfig
from stripe_sync_tui.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                            if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def only(keyword: str) -> str:
    values = [rest for name, rest in instructions() if name == keyword]
    assert len(values) == 1, f"{keyword}: {values}"
    return values[0]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), "use the exec (JSON) form"
    return value


def healthcheck_command(port: int | None = None) -> list[str]:
    """The HEALTHCHECK's command, pointed at `port` when given (to run it against a test server)."""
    text = only("HEALTHCHECK")
    command = exec_form(text[text.index("CMD") + 3:].strip())
    if port is not None:
        command = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", part) for part in command]
    return command


def test_the_image_is_slim_python_of_a_supported_version():
    image = only("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", image)
    assert match, image
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low = tuple(int(p) for p in re.search(r">=\s*(\d+)\.(\d+)", required).groups())
    assert (int(match[1]), int(match[2])) >= low


def test_everything_it_copies_exists():
    for name, rest in instructions():
        if name == "COPY":
            *sources, _destination = shlex.split(rest)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_it_runs_serve_through_the_installed_entry_point_on_the_exposed_port():
    command = exec_form(only("CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts, f"{command[0]} is not an entry point of the project"
    module, _, function = scripts[command[0]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    args = build_parser().parse_args(command[1:])
    assert args.headless and args.command == "serve"
    assert args.host == "0.0.0.0"  # reachable from outside the container
    exposed = int(only("EXPOSE").split("/")[0])
    assert exposed == args.port == SyncConfig().listener_port
    assert f"127.0.0.1:{exposed}/health" in " ".join(healthcheck_command())
    assert only("STOPSIGNAL") == "SIGTERM"


def test_it_runs_as_a_non_root_user_the_image_creates():
    user = only("USER").split(":")[0]
    assert user not in ("root", "0")
    created = re.search(r"useradd\b[^&]*--uid (\d+)[^&]*?(\w+)\s*$", only("RUN").split("&&")[-1].strip())
    assert created, "the image creates its user with useradd --uid"
    assert user in (created[1], created[2])
