"""The migration scripts live in the repository's top-level `alembic/`: the usual `alembic` commands work
from a checkout with the URL from the project's settings, and a built wheel carries the same scripts and
migrates a database on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from stripe_sync_core.migrate import MIGRATIONS_DIR, current_revision

REPO = Path(__file__).resolve().parents[1]
HEAD = ScriptDirectory(str(REPO / "alembic")).get_current_head()


def _drop_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS stripe CASCADE")


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'stripe'")}


def _alembic(*args: str, cwd: Path, database_url: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "STRIPE_SYNC_CONFIG": str(cwd / "no-config.toml")}
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_engine_uses_the_one_copy_in_the_checkout():
    assert MIGRATIONS_DIR == REPO / "alembic"
    assert not (REPO / "alembic" / "__init__.py").exists(), "a package named alembic would shadow Alembic"
    assert not (REPO / "src" / "stripe_sync_core" / "migrations").exists()


def test_import_alembic_from_the_repository_root_finds_the_installed_package():
    found = subprocess.run([sys.executable, "-c", "import alembic.config; print(alembic.__file__)"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert "site-packages" in found.stdout


def test_alembic_upgrade_and_history_from_a_checkout_use_the_settings_url(database_url):
    _drop_schema(database_url)
    history = _alembic("history", cwd=REPO)
    assert history.returncode == 0, history.stderr
    assert "0001" in history.stdout and f"{HEAD} (head)" in history.stdout

    upgrade = _alembic("upgrade", "head", cwd=REPO, database_url=database_url)
    assert upgrade.returncode == 0, upgrade.stderr
    assert current_revision(database_url) == HEAD
    assert {"customers", "_sync_runs", "_events"} <= _tables(database_url)

    current = _alembic("current", cwd=REPO, database_url=database_url)
    assert current.returncode == 0, current.stderr
    assert f"{HEAD} (head)" in current.stdout


def test_alembic_downgrade_to_base_then_back(database_url):
    assert _alembic("upgrade", "head", cwd=REPO, database_url=database_url).returncode == 0
    down = _alembic("downgrade", "base", cwd=REPO, database_url=database_url)
    assert down.returncode == 0, down.stderr
    assert _tables(database_url) == {"_migrations"}
    up = _alembic("upgrade", "head", cwd=REPO, database_url=database_url)
    assert up.returncode == 0, up.stderr
    assert current_revision(database_url) == HEAD


def test_alembic_revision_writes_a_numbered_script_on_top_of_head(tmp_path):
    shutil.copytree(REPO / "alembic", tmp_path / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "alembic.ini", tmp_path / "alembic.ini")
    made = _alembic("revision", "-m", "add a column", "--rev-id", "0999", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    script = tmp_path / "alembic" / "versions" / "0999_add_a_column.py"
    assert script.exists(), sorted(p.name for p in (tmp_path / "alembic" / "versions").iterdir())
    text = script.read_text()
    assert "revision = '0999'" in text and f"down_revision = '{HEAD}'" in text
    heads = _alembic("heads", cwd=tmp_path)
    assert heads.returncode == 0 and heads.stdout.startswith("0999 (head)"), heads.stdout + heads.stderr


def test_an_unreachable_database_is_one_clear_line_with_the_password_masked(tmp_path):
    shutil.copy(REPO / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(REPO / "alembic", tmp_path / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    failed = _alembic("-x", "url=postgresql://postgres:hunter2@127.0.0.1:1/nope", "upgrade", "head", cwd=tmp_path)
    assert failed.returncode != 0
    assert "cannot reach PostgreSQL at postgresql://postgres:****@127.0.0.1:1/nope" in failed.stderr
    assert "hunter2" not in failed.stdout + failed.stderr and "Traceback" not in failed.stderr


@pytest.mark.timeout(300)
def test_an_installed_wheel_carries_the_scripts_and_migrates_on_its_own(database_url, tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(REPO), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("stripe_sync_tui-*.whl")

    env_dir = tmp_path / "fresh-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=240)
    assert installed.returncode == 0, installed.stderr
    # The dependencies (Alembic, SQLAlchemy, psycopg ...) come from this test run's environment, after the
    # fresh one's own site-packages, so the package itself can only be the installed wheel.
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    (fresh_site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    _drop_schema(database_url)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    migrate = subprocess.run(
        [str(python), "-c",
         "import stripe_sync_core, stripe_sync_core.migrate as m, sys\n"
         "print(stripe_sync_core.__file__); print(m.MIGRATIONS_DIR)\n"
         "print(m.run_migrations(sys.argv[1]))", database_url],
        cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    module_file, scripts_dir, result = migrate.stdout.strip().splitlines()
    assert module_file.startswith(str(fresh_site))
    assert scripts_dir == str(fresh_site / "stripe_sync_core" / "_alembic")
    assert result == f"(None, '{HEAD}')"
    assert {"customers", "_sync_runs", "_events"} <= _tables(database_url)

    again = subprocess.run([str(env_dir / "bin" / "stripe-sync-tui"), "--headless", "migrate",
                            "--database-url", database_url], cwd=elsewhere, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
