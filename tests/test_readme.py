"""Every code block of the README runs here, against the emulator and the test database, so the README
cannot drift from what works.

- `python` blocks run as files (a pasted example must be a valid program), with the example's
  placeholders (`postgresql://localhost/app`, `sk_test_...`, `cus_123`, port 8787) replaced by the test's
  database, the emulator's key and ids and a port the OS picks; the Flask handler is then driven with a
  signed delivery and an unsigned one.
- `sql` blocks run against the database those examples filled.
- `sh` blocks run line by line: every `stripe-sync-tui --headless` command with the test's settings
  appended (global flags work after the command); the long-running ones (`listen`, `emulator`) until
  they say they are ready, then Ctrl-C; Alembic's commands in a copy of the scripts; the install and test
  commands are checked to be the ones `.ci/run` executes; the console (`--demo`, no terminal here) and the
  benchmarks (minutes each, timed outside the suite) are checked to parse their arguments.
- `ini` blocks are systemd units (systemd does not run here): the command each starts parses as the
  headless command it names, and it is given time enough to drain on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from stripe_sync_emulator import StripeEmulator

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CLI = [sys.executable, "-m", "stripe_sync_tui.cli"]
WEBHOOK_SECRET = "whsec_readmeExampleSecret0001"


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int


def readme_blocks() -> list[Block]:
    blocks, language, lines, start = [], None, [], 0
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if language is None:
                language, lines, start = line[3:].strip(), [], number
            else:
                blocks.append(Block(language, "\n".join(lines) + "\n", start))
                language = None
        elif language is not None:
            lines.append(line)
    assert language is None, "a code block is not closed"
    return blocks


BLOCKS = readme_blocks()


def command_lines(block: Block) -> list[tuple[int, str]]:
    """(README line, command) for each command of a shell block, comments dropped."""
    found: list[tuple[int, str]] = []
    pending, start = "", 0
    for offset, line in enumerate(block.text.splitlines(), start=1):
        text = re.sub(r"\s+#.*$", "", line).strip()
        if not pending:
            start = block.line + offset
        if text.endswith("\\"):  # continued on the next line
            pending += text[:-1] + " "
            continue
        command = (pending + text).strip()
        pending = ""
        if command:
            found.append((start, command))
    return found


@pytest.fixture(scope="module")
def emulator():
    with StripeEmulator(seed=11, customers=8, start="2025-01-01", end="2025-12-31") as emu:
        yield emu


def test_every_block_is_of_a_language_this_test_runs():
    assert BLOCKS, "the README has no code blocks"
    assert {block.language for block in BLOCKS} <= {"sh", "python", "sql", "ini"}, [b.line for b in BLOCKS]


# -- python and sql ------------------------------------------------------------------------------------


def _placeholders(emu: StripeEmulator, database_url: str) -> dict[str, str]:
    return {
        '"postgresql://localhost/app"': repr(database_url),
        '"sk_test_..."': repr(emu.secret_key),
        '"sk_live_..."': repr(emu.secret_key),  # the emulator answers any mode; the example names live
        '"whsec_..."': repr(WEBHOOK_SECRET),
        '"cus_123"': repr(emu.objects("customers")[0]["id"]),
        "port=8787": "port=0",
        # SyncConfig's API base is Stripe's unless given: the examples are pointed at the emulator.
        "SyncConfig(": f"SyncConfig(stripe_api_base={emu.api_base!r}, ",
    }


FLASK_DRIVER = '''
import json as _json
import time as _time

import stripe as _stripe

_event = {"id": "evt_readme_1", "object": "event", "type": "customer.updated", "created": int(_time.time()),
          "data": {"object": {"id": "cus_readme", "object": "customer", "email": "readme@example.com"}}}
_body = _json.dumps(_event)
_signature = _stripe.WebhookSignature.generate_signature_header(_body, WEBHOOK_SECRET)
_client = app.test_client()
_ok = _client.post("/stripe-webhooks", data=_body, headers={"Stripe-Signature": _signature})
_refused = _client.post("/stripe-webhooks", data=_body, headers={"Stripe-Signature": "t=1,v1=00"})
print("FLASK", _ok.status_code, _refused.status_code, _refused.get_json()["error"][:40])
sync.close()
'''


def _run_python(source: str, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL, cwd=tmp_path,
                          env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})


def test_python_and_sql_blocks_run(clean_db, emulator, tmp_path):
    python = [block for block in BLOCKS if block.language == "python"]
    assert len(python) >= 3
    for block in python:
        compile(block.text, f"README.md:{block.line}", "exec")  # pasted into a file, it must be a program
        source = block.text
        for placeholder, value in _placeholders(emulator, clean_db).items():
            source = source.replace(placeholder, value)
        if "from flask import" in source:
            source += FLASK_DRIVER.replace("WEBHOOK_SECRET", repr(WEBHOOK_SECRET))
        result = _run_python(source, tmp_path, f"readme_{block.line}")
        assert result.returncode == 0, f"README.md:{block.line}\n{result.stderr[-3000:]}"
        if "from flask import" in source:
            assert "FLASK 200 400" in result.stdout, result.stdout
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM stripe.invoices").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM stripe._managed_webhooks").fetchone()[0] >= 1
        for block in (b for b in BLOCKS if b.language == "sql"):
            conn.execute(block.text).fetchall()


# -- shell ---------------------------------------------------------------------------------------------

LONG_RUNNING = {"listen": "Ready!", "serve": "Serving on", "emulator": "listening on"}
"""Headless commands that serve until stopped, and what they print once ready."""


def _settings(database_url: str, emu: StripeEmulator) -> list[str]:
    return ["--database-url", database_url, "--stripe-key", emu.secret_key, "--stripe-api-base", emu.api_base]


def _until_ready(argv: list[str], ready: str, line: int) -> None:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               stdin=subprocess.DEVNULL, env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for output in process.stdout:
            seen.append(output)
            if ready in output:
                break
        else:
            raise AssertionError(f"README.md:{line} ended before it was ready: {''.join(seen)[-2000:]}")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) in (0, 130), f"README.md:{line}: {''.join(seen)[-2000:]}"
    finally:
        if process.poll() is None:
            process.kill()


def _parses(argv: list[str]) -> None:
    from stripe_sync_tui.cli import build_parser

    build_parser().parse_args(argv)  # argparse exits 2 on a flag that does not exist


def _headless(command: str, line: int, database_url: str, emu: StripeEmulator, ids: dict[str, str]) -> None:
    words = shlex.split(command)
    assert words[0].endswith("stripe-sync-tui"), command
    arguments = [ids.get(word, word) for word in words[1:]]
    if "--demo" in arguments:  # the offline demo: test_headless.py runs `--headless --demo backfill all`
        _parses(arguments)
        return
    subcommand = next(word for word in arguments if not word.startswith("-"))
    if subcommand == "emulator":
        arguments = [("0" if previous == "--port" else word) for previous, word in zip(["", *arguments], arguments, strict=False)]
        _until_ready([*CLI, *arguments], LONG_RUNNING[subcommand], line)
        return
    arguments += _settings(database_url, emu)
    if any(word.startswith("sigma") or word == "--sigma" for word in arguments):  # Sigma: live keys only
        arguments += ["--stripe-key", emu.live_secret_key]
    if subcommand in ("listen", "serve"):
        arguments = [("0" if previous == "--port" else word) for previous, word in zip(["", *arguments], arguments, strict=False)]
        _until_ready([*CLI, *arguments], LONG_RUNNING[subcommand], line)
        return
    result = subprocess.run([*CLI, "--json", *arguments], capture_output=True, text=True, timeout=240,
                            stdin=subprocess.DEVNULL, env={**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"})
    if "--join" in arguments and result.returncode == 2:  # nothing open to join at this point: said so
        assert "no open backfill" in result.stderr, result.stderr
        return
    assert result.returncode == 0, f"README.md:{line}: {command}\n{result.stderr[-2000:]}"
    for record in map(json.loads, filter(None, result.stdout.splitlines())):
        if record.get("kind") == "webhook" and record.get("id"):
            ids["we_123"] = record["id"]


def test_shell_blocks_run(clean_db, emulator, tmp_path):
    ids = {"cus_123": emulator.objects("customers")[0]["id"], "acct_123": emulator.account_id}
    ci = (REPO / ".ci" / "run").read_text()
    for block in (b for b in BLOCKS if b.language == "sh"):
        for line, command in command_lines(block):
            if command.startswith("python3 -m venv"):  # install (and test): what CI itself runs
                steps = [step.strip() for step in command.split("&&")]
                if any("pytest" in step for step in steps):
                    assert command in ci, f"README.md:{line}: the test command is not the one .ci/run runs"
                else:
                    _parses(shlex.split(steps[-1])[1:])
            elif "stripe-sync-tui" in command.split()[0]:
                _headless(command, line, clean_db, emulator, ids)
            elif "alembic" in command:
                _alembic(command, line, clean_db, tmp_path)
            elif command.startswith(".venv/bin/python benchmarks/") or "benchmarks/" in command:
                script = next(word for word in shlex.split(command) if word.startswith("benchmarks/"))
                result = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True,
                                        text=True, timeout=60, cwd=REPO)
                assert result.returncode == 0, f"README.md:{line}: {script} --help\n{result.stderr[-1500:]}"
            else:
                raise AssertionError(f"README.md:{line}: no way to run {command!r}: teach this test")


def _alembic(command: str, line: int, database_url: str, tmp_path: Path) -> None:
    """Alembic's own commands, in a copy of the scripts (a new revision must not land in the checkout)."""
    checkout = tmp_path / "checkout"
    if not checkout.exists():
        checkout.mkdir()
        shutil.copytree(REPO / "alembic", checkout / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "alembic.ini", checkout / "alembic.ini")
    words = shlex.split(command)
    environment = {**os.environ, "STRIPE_SYNC_CONFIG": "/nonexistent"}
    while "=" in words[0]:
        name, _ = words.pop(0).split("=", 1)
        environment[name] = database_url  # the only variable the README sets is the database URL
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run([str(alembic), *words[1:]], capture_output=True, text=True, timeout=120,
                            cwd=checkout, env={**environment, "DATABASE_URL": environment.get("DATABASE_URL",
                                                                                              database_url)})
    assert result.returncode == 0, f"README.md:{line}: {command}\n{result.stderr[-2000:]}"
    if words[1] == "revision":
        assert list((checkout / "alembic" / "versions").glob("*_add_a_column.py"))


# -- systemd units -------------------------------------------------------------------------------------


def test_systemd_units_start_a_command_that_parses_and_let_it_drain():
    from stripe_sync_core.service import DEFAULT_DRAIN_SECONDS

    units = [block for block in BLOCKS if block.language == "ini"]
    assert units, "the README shows a systemd unit"
    for block in units:
        settings: dict[str, str] = {}
        for text in block.text.splitlines():
            if "=" in text and not text.startswith(("#", ";", "[")):
                key, _, value = text.partition("=")
                settings[key.strip()] = value.strip()
        program, *arguments = shlex.split(settings["ExecStart"])
        assert program.endswith("/stripe-sync-tui"), f"README.md:{block.line}: {program}"
        _parses(arguments)
        assert settings.get("KillSignal", "SIGTERM") == "SIGTERM"
        assert float(settings["TimeoutStopSec"]) > DEFAULT_DRAIN_SECONDS, f"README.md:{block.line}"
