"""Settings precedence, validation and masking; the embedded server's stale-pid handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stripe_sync_core.config import ConfigError, SyncConfig, load_config
from stripe_sync_core.embedded import clear_stale_postmaster_pid
from stripe_sync_core.masking import mask_database_url, mask_secret, mask_secrets_in


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path):
    config_file = tmp_path / "config.toml"
    config_file.write_text('database_url = "postgresql://file/db"\nmax_retries = 2\n'
                           'stripe_secret_key = "sk_test_fromfile1234"\n')
    env = {"DATABASE_URL": "postgresql://env/db", "STRIPE_API_KEY": "sk_test_fromenv5678"}
    config = load_config({"database_url": "postgresql://flag/db"}, config_path=config_file, environ=env)
    assert config.database_url == "postgresql://flag/db"
    assert config.stripe_secret_key == "sk_test_fromenv5678"
    assert config.max_retries == 2
    assert config.initial_retry_delay_ms == 1000
    assert load_config({}, config_path=tmp_path / "missing.toml", environ={}).database_url is None


def test_bad_settings_are_clear_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a Stripe secret key"):
        SyncConfig(stripe_secret_key="pk_test_123456789")
    bad = tmp_path / "bad.toml"
    bad.write_text("max_retries = [")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config({}, config_path=bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown setting.*colour"):
        load_config({}, config_path=unknown, environ={})
    with pytest.raises(ConfigError, match="retry delays"):
        SyncConfig(initial_retry_delay_ms=10, max_retry_delay_ms=1)


def test_a_child_process_loads_exactly_the_settings_it_is_given(tmp_path: Path):
    """`child_environment` (how the console hands its settings to a backfill worker): every setting, in
    one variable, over the config file; the single-setting variables of the parent dropped so they
    cannot override; a flag given to the child still wins."""
    config_file = tmp_path / "config.toml"
    config_file.write_text('max_retries = 9\nstripe_api_base = "http://file.test"\n')
    config = SyncConfig(database_url="postgresql://user:pw@db.test/app", stripe_secret_key="sk_test_child1234",
                        stripe_api_base="http://127.0.0.1:1234", max_retries=0, max_requests_per_second=0,
                        revalidate_objects_via_stripe_api=("customers",), listener_port=0)
    parent = {"PATH": os.environ.get("PATH", ""), "STRIPE_SYNC_CONFIG": str(config_file),
              "DATABASE_URL": "postgresql://parent/db", "STRIPE_API_KEY": "sk_test_parent9999"}
    environment = config.child_environment(parent)

    assert "DATABASE_URL" not in environment and "STRIPE_API_KEY" not in environment
    assert environment["PATH"] == parent["PATH"]
    assert [name for name, value in environment.items() if "sk_test_child1234" in value] == ["STRIPE_SYNC_SETTINGS"]
    assert load_config({}, environ=environment) == config
    assert load_config({"database_url": "postgresql://flag/db"}, environ=environment).database_url \
        == "postgresql://flag/db"

    shown = subprocess.run(
        [sys.executable, "-c", "from stripe_sync_core.config import load_config; c = load_config(); "
         "print(c.stripe_secret_key, c.stripe_api_base, c.max_retries, c.max_requests_per_second, c.database_url)"],
        env=environment, capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["sk_test_child1234", "http://127.0.0.1:1234", "0", "0", "postgresql://user:pw@db.test/app"]


def test_a_malformed_settings_variable_is_a_clear_error():
    with pytest.raises(ConfigError, match="STRIPE_SYNC_SETTINGS is not JSON"):
        load_config({}, environ={"STRIPE_SYNC_SETTINGS": "{"})
    with pytest.raises(ConfigError, match="unknown: colour"):
        load_config({}, environ={"STRIPE_SYNC_SETTINGS": '{"colour": "red"}'})


def test_secrets_keep_only_their_last_four_characters():
    assert mask_secret("sk_test_51HabcdefghijklmnopWXYZ") == "sk_test_...WXYZ"
    assert mask_secret("whsec_abcdefghijklmnop1234") == "whsec_...1234"
    assert mask_secret("sk_live_short") == "sk_live_****"
    assert mask_database_url("postgresql://me:s3cret@db:5432/app") == "postgresql://me:****@db:5432/app"
    line = "key sk_live_abcdefghijkl9876 and whsec_zzzzzzzzzzzz1111 leaked"
    assert mask_secrets_in(line) == "key sk_live_...9876 and whsec_...1111 leaked"
    shown = SyncConfig(stripe_secret_key="sk_test_abcdefghijkl4321",
                       database_url="postgresql://u:pw@h/d").masked()
    assert shown["stripe_secret_key"] == "sk_test_...4321" and "pw" not in shown["database_url"]


def test_database_passwords_are_masked_in_every_form_libpq_accepts():
    forms = {
        "postgresql://postgres@127.0.0.1:5432/db?password=Secret": "postgresql://postgres@127.0.0.1:5432/db?password=****",
        "postgres://u@h/db?sslmode=require&PASSWORD=Secret&connect_timeout=3":
            "postgres://u@h/db?sslmode=require&PASSWORD=****&connect_timeout=3",
        "postgresql://u:Secret@h/db?password=Secret": "postgresql://u:****@h/db?password=****",
        "host=127.0.0.1 user=postgres password=Secret dbname=db": "host=127.0.0.1 user=postgres password=**** dbname=db",
        "host=h password = 'Sec ret\\' x' dbname=db": "host=h password = **** dbname=db",
        "service=billing": "service=billing",
    }
    for given, shown in forms.items():
        assert mask_database_url(given) == shown
        assert "Secret" not in SyncConfig(database_url=given).masked()["database_url"]
    error = "cannot reach postgresql://u@h/db?password=Secret: refused; retried host=h password=Secret dbname=d"
    assert "Secret" not in mask_secrets_in(error)


def test_libpq_variables_name_the_server_when_no_url_is_given(tmp_path: Path):
    none = tmp_path / "none.toml"
    assert load_config({}, config_path=none, environ={}).database_url is None  # the embedded server
    assert load_config({}, config_path=none, environ={"PGHOST": "db", "PGUSER": "app"}).database_url == "postgresql://"
    explicit = load_config({}, config_path=none, environ={"PGHOST": "db", "DATABASE_URL": "postgresql://x/y"})
    assert explicit.database_url == "postgresql://x/y"


def test_livemode_follows_the_key():
    assert SyncConfig(stripe_secret_key="sk_live_abc123456789").livemode is True
    assert SyncConfig(stripe_secret_key="rk_test_abc123456789").livemode is False
    assert SyncConfig().livemode is None


def test_stale_postmaster_pid_is_removed_but_a_live_one_kept(tmp_path: Path):
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    pid_file = pgdata / "postmaster.pid"
    # After a reboot the recorded pid may belong to anything: here, this very (non-postgres) process.
    pid_file.write_text(f"{os.getpid()}\n{pgdata}\n")
    assert clear_stale_postmaster_pid(pgdata) is True
    assert not pid_file.exists()
    # A pid that exists nowhere.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n{pgdata}\n")
    assert clear_stale_postmaster_pid(pgdata) is True
    assert clear_stale_postmaster_pid(pgdata) is False  # nothing left to clear


def test_embedded_server_starts_despite_a_stale_pid_file(tmp_path: Path):
    from stripe_sync_core.embedded import EmbeddedPostgres

    first = EmbeddedPostgres(tmp_path)
    first.start()
    first.stop()
    (tmp_path / "pgdata" / "postmaster.pid").write_text(f"{os.getpid()}\n{tmp_path / 'pgdata'}\n")
    second = EmbeddedPostgres(tmp_path)
    try:
        url = second.start()
        import psycopg

        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        second.stop()
