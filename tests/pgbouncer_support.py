"""A real PgBouncer in transaction mode in front of the test database (what Supabase's pooler on port
6543 does), listening on a Unix socket in a temporary directory only: no TCP port at all.

Debian's `pgbouncer` package provides the binary (`.ci/run` installs it); where it is missing the tests
that need it are skipped, saying so.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

PGBOUNCER = shutil.which("pgbouncer") or next(
    (path for path in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer") if os.access(path, os.X_OK)), None)

SOCKET_PORT = 6432
"""Only names the socket file (`.s.PGSQL.6432`): with `listen_addr` empty PgBouncer binds no TCP port."""


def missing_reason() -> str | None:
    if PGBOUNCER is None:
        return "pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run installs it)"
    return None


def _quote_value(value: object) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 20) -> Iterator[str]:
    """Start PgBouncer (transaction pooling) in front of `database_url`'s server; yields the URL of the
    same database through it."""
    assert PGBOUNCER is not None, missing_reason()
    target = conninfo_to_dict(database_url)
    dbname = str(target["dbname"])
    user = str(target.get("user") or "postgres")
    tmp = Path(tempfile.mkdtemp(prefix="stripe-sync-pgbouncer-"))
    server = {key: target[key] for key in ("host", "port", "password") if target.get(key)}
    server.setdefault("host", "127.0.0.1")
    run_as: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it drops to an unprivileged user
        user_entry = pwd.getpwnam("nobody")
        socket_dir = Path(str(server["host"]))
        if socket_dir.is_absolute() and socket_dir.is_dir() and socket_dir.stat().st_uid != 0:
            user_entry = pwd.getpwuid(socket_dir.stat().st_uid)  # the embedded server's user reaches its socket
        run_as = ["-u", user_entry.pw_name]
        os.chown(tmp, user_entry.pw_uid, user_entry.pw_gid)
    server_line = " ".join(f"{key}={_quote_value(value)}" for key, value in server.items())
    (tmp / "userlist.txt").write_text(f'"{user}" ""\n')
    config = tmp / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{dbname} = {server_line} dbname={_quote_value(dbname)} user={_quote_value(user)}\n"
        "[pgbouncer]\n"
        "listen_addr =\n"
        f"listen_port = {SOCKET_PORT}\n"
        f"unix_socket_dir = {tmp}\n"
        "auth_type = trust\n"
        f"auth_file = {tmp / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 500\n"
        "server_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {tmp / 'pgbouncer.log'}\n"
        f"pidfile = {tmp / 'pgbouncer.pid'}\n"
    )
    for path in tmp.iterdir():
        os.chmod(path, 0o644)
    process = subprocess.Popen([PGBOUNCER, *run_as, str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = (f"postgresql://{quote(user)}@/{quote(dbname)}?"
           + urlencode({"host": str(tmp), "port": str(SOCKET_PORT)}))
    try:
        _wait_until_ready(url, process, tmp)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_until_ready(url: str, process: subprocess.Popen, tmp: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({process.returncode}): {_log(process, tmp)}")
        try:
            with psycopg.connect(url, connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not answer: {error}; {_log(process, tmp)}") from None
            time.sleep(0.05)


def _log(process: subprocess.Popen, tmp: Path) -> str:
    text = ""
    if process.stderr is not None and process.poll() is not None:
        text = process.stderr.read().decode(errors="replace")
    log = tmp / "pgbouncer.log"
    if log.exists():
        text += log.read_text(errors="replace")
    return text.strip()[-2000:]
