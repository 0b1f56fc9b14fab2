"""Public HTTPS tunnel to a local port through an ngrok agent, driven by pyngrok.

Every call here blocks (starting the agent can take seconds): run them in a worker thread.

Each tunnel gets a private pyngrok configuration: its own ``ngrok.yml`` (in a temporary directory,
or in ``config_dir``), never the user's ``~/.config/ngrok``; the auth token is passed to the agent
for this run only. pyngrok keeps one agent process per ngrok executable path, so tunnels opened
with the same executable (and the same token) share that agent; the last one closed stops it.

The ngrok executable is, in order: ``ngrok_path``, ``$STRIPE_SYNC_NGROK_PATH``, ``ngrok`` on
``PATH``, pyngrok's default install location; when none exists, and only then, pyngrok downloads
ngrok to its default location. An explicit path that does not exist fails at once, without any
download.

Errors surface as :class:`TunnelError`, with the auth token masked (all but its last 4
characters) in the message and in the ngrok lines that pyngrok logs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pyngrok import conf, installer, ngrok, process
from pyngrok.exception import (
    PyngrokError,
    PyngrokNgrokError,
    PyngrokNgrokHTTPError,
    PyngrokNgrokInstallError,
    PyngrokNgrokURLError,
    PyngrokSecurityError,
)

from .errors import Unavailable
from .log_filters import ScopedLogFilter
from .masking import mask_token

__all__ = ["ENV_NGROK_PATH", "Tunnel", "TunnelError", "mask_token", "open_tunnel"]

logger = logging.getLogger(__name__)

#: Environment variable naming the ngrok executable to use.
ENV_NGROK_PATH = "STRIPE_SYNC_NGROK_PATH"

_DASHBOARD_TOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
_AUTH_ERROR_CODES = {"ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107", "ERR_NGROK_4018"}
_PYNGROK_LOGGERS = ("pyngrok.process", "pyngrok.process.ngrok", "pyngrok.ngrok", "pyngrok.installer")


class TunnelError(Unavailable):
    """Opening or using a tunnel failed. The message is meant for the operator and never holds a full token."""

    def __init__(self, message: str, *, ngrok_error_code: str | None = None) -> None:
        super().__init__(message)
        #: ngrok's error code (``ERR_NGROK_...``) when the agent reported one.
        self.ngrok_error_code = ngrok_error_code


# --------------------------------------------------------------------------- token redaction

_secrets: Counter[str] = Counter()
_secrets_lock = threading.Lock()


def _redact(text: str, tokens: list[str] | None = None) -> str:
    if tokens is None:
        with _secrets_lock:
            tokens = list(_secrets)
    for token in sorted(tokens, key=len, reverse=True):
        if token:
            text = text.replace(token, mask_token(token))
    return text


class _RedactTokens(logging.Filter):
    """Masks the auth tokens of open tunnels in records of pyngrok's loggers (ngrok echoes bad tokens)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _secrets_lock:
            tokens = list(_secrets)
        if tokens:
            try:
                message = record.getMessage()
            except Exception:  # malformed record: leave it to the handler
                return True
            redacted = _redact(message, tokens)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


# Installed while a tunnel is open (the tokens it masks are the open tunnels'). Without any handler
# configured, Python's last-resort handler would print pyngrok's ERROR lines (the agent's output) and our
# warnings on stderr, under a TUI: a NullHandler keeps them quiet; records still reach the app's handlers.
_REDACT_FILTER = ScopedLogFilter(_RedactTokens(), _PYNGROK_LOGGERS, quiet_loggers=("pyngrok", __name__))


def _hold_secret(token: str) -> None:
    _REDACT_FILTER.acquire()
    with _secrets_lock:
        _secrets[token] += 1


def _release_secret(token: str) -> None:
    with _secrets_lock:
        _secrets[token] -= 1
        if _secrets[token] <= 0:
            del _secrets[token]
    _REDACT_FILTER.release()


# --------------------------------------------------------------------------- agents shared per executable


@dataclass
class _Agent:
    token: str | None  # None: found running, not started here
    owned: bool
    users: int = 0


_agents: dict[str, _Agent] = {}
_agents_lock = threading.RLock()


def _stop_agent(path: str, pyngrok_config: conf.PyngrokConfig) -> None:
    """Terminate the agent for ``path`` (SIGTERM, then SIGKILL) and forget it. Caller holds ``_agents_lock``."""
    if process.is_process_running(path):
        ngrok_process = process.get_process(pyngrok_config)  # the running one: nothing is started
        ngrok_process.stop_monitor_thread()
        try:
            ngrok_process.proc.terminate()
            ngrok_process.proc.wait(timeout=3)
        except (OSError, subprocess.TimeoutExpired):
            pass
    process.kill_process(path)  # kills if still alive, reaps and drops pyngrok's record either way


class _StartupWatchdog:
    """Enforces ``startup_timeout``: pyngrok checks it only between agent output lines, so a silent
    agent would block its start-up loop forever. Past the deadline, a still-unhealthy agent is killed,
    which ends pyngrok's wait with an error."""

    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timer = threading.Timer(timeout + 0.5, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        running = getattr(process, "_current_processes", {}).get(self._path)
        if running is None or running.proc.poll() is not None:
            return
        try:
            if running.healthy():
                return
        except PyngrokError:
            pass
        logger.warning("ngrok agent %s did not start in time; killing it", running.proc.pid)
        try:
            running.proc.kill()
        except OSError:
            pass


# --------------------------------------------------------------------------- the tunnel


@dataclass
class _Handle:
    ngrok_path: str
    pyngrok_config: conf.PyngrokConfig
    token: str
    temp_dir: str | None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Tunnel:
    """An open tunnel: ``public_url`` (https) forwards to ``upstream_url`` (``http://host:local_port``)."""

    public_url: str
    local_port: int
    upstream_url: str = ""
    #: The agent's local API (``http://127.0.0.1:<port>``), for diagnostics.
    api_url: str | None = field(default=None, repr=False)
    #: Process id of the ngrok agent serving this tunnel.
    agent_pid: int | None = field(default=None, repr=False)
    _handle: _Handle | None = field(default=None, repr=False, compare=False)

    @property
    def closed(self) -> bool:
        return self._handle is None or self._handle.closed

    def is_running(self) -> bool:
        """True while open and its agent process is alive."""
        return not self.closed and self._handle is not None and process.is_process_running(self._handle.ngrok_path)

    def close(self) -> None:
        """Disconnect the tunnel and stop the agent process if no other tunnel uses it. Idempotent."""
        handle = self._handle
        if handle is None:
            return
        with handle.lock:
            if handle.closed:
                return
            handle.closed = True
        try:
            with _agents_lock:
                path, cfg = handle.ngrok_path, handle.pyngrok_config
                if process.is_process_running(path) and os.path.isfile(path):
                    try:
                        ngrok.disconnect(self.public_url, cfg)
                    except (PyngrokError, OSError) as exc:
                        logger.warning("could not disconnect ngrok tunnel %s: %s", self.public_url,
                                       _redact(str(exc), [handle.token]))
                agent = _agents.get(path)
                if agent is not None:
                    agent.users -= 1
                    if agent.users <= 0:
                        del _agents[path]
                        if agent.owned:
                            _stop_agent(path, cfg)
        finally:
            if handle.temp_dir:
                shutil.rmtree(handle.temp_dir, ignore_errors=True)
            _release_secret(handle.token)

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- opening


def _resolve_ngrok_path(ngrok_path: str | None, allow_download: bool) -> str:
    explicit, source = ngrok_path, "ngrok_path"
    if not explicit:
        explicit, source = (os.environ.get(ENV_NGROK_PATH) or "").strip() or None, ENV_NGROK_PATH
    if explicit:
        path = os.path.abspath(os.path.expanduser(explicit))
        if not os.path.isfile(path):
            raise TunnelError(f"ngrok executable not found at {path} (from {source}): install ngrok "
                              f"(https://ngrok.com/download) or set {ENV_NGROK_PATH} to its path")
        if not os.access(path, os.X_OK):
            raise TunnelError(f"ngrok at {path} (from {source}) is not executable: chmod +x it "
                              f"or set {ENV_NGROK_PATH} to another ngrok")
        return path

    on_path = shutil.which("ngrok")
    if on_path:
        return os.path.abspath(on_path)
    default = conf.DEFAULT_NGROK_PATH
    if os.path.isfile(default):
        return default
    if not allow_download:
        raise TunnelError(f"ngrok is not installed: install it (https://ngrok.com/download) "
                          f"or set {ENV_NGROK_PATH} to its path")

    logger.info("ngrok not found; downloading it to %s", default)
    previous = getattr(installer, "_print_progress_enabled", None)
    if previous is not None:
        installer._print_progress_enabled = False  # progress goes to stdout, which a TUI owns
    try:
        installer.install_ngrok(default, ngrok_version="3")
    except (PyngrokError, OSError) as exc:
        raise TunnelError(f"ngrok is not installed and could not be downloaded ({_one_line(str(exc))}): "
                          f"install it or set {ENV_NGROK_PATH} to its path") from None
    finally:
        if previous is not None:
            installer._print_progress_enabled = previous
    if not os.path.isfile(default):
        raise TunnelError(f"ngrok is not installed and could not be downloaded: install it or set "
                          f"{ENV_NGROK_PATH} to its path")
    return default


def _private_config(config_dir: str | None) -> tuple[str, str | None]:
    """Return (config file path, temp dir to delete on close or None)."""
    temp_dir = None
    if config_dir:
        directory = os.path.abspath(os.path.expanduser(config_dir))
        os.makedirs(directory, mode=0o700, exist_ok=True)
    else:
        directory = temp_dir = tempfile.mkdtemp(prefix="stripe-sync-ngrok-")
    config_path = os.path.join(directory, "ngrok.yml")
    if not os.path.exists(config_path):
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write('version: "3"\n')
    return config_path, temp_dir


def _one_line(text: str) -> str:
    text = text.replace("\\n", "\n")
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _translate(exc: BaseException, token: str, path: str, startup_timeout: float) -> TunnelError:
    """Turn a pyngrok/OS exception into a TunnelError with an actionable, token-free message."""

    def clean(text: str) -> str:
        return _redact(_one_line(text), [token])

    masked = mask_token(token)
    if isinstance(exc, PyngrokNgrokInstallError):
        return TunnelError(f"ngrok is not installed and could not be downloaded ({clean(str(exc))}): "
                           f"install it or set {ENV_NGROK_PATH} to its path")
    if isinstance(exc, PyngrokSecurityError):
        return TunnelError(f"refused an unexpected ngrok agent API address: {clean(str(exc))}")
    if isinstance(exc, PyngrokNgrokHTTPError):
        return TunnelError(f"the ngrok agent refused to open the tunnel (HTTP {exc.status_code}): "
                           f"{clean(exc.body or str(exc))}")
    if isinstance(exc, PyngrokNgrokURLError):
        return TunnelError(f"could not reach the ngrok agent's local API: {clean(str(exc.reason))}")
    if isinstance(exc, PyngrokNgrokError):
        code = exc.ngrok_error_code
        if exc.ngrok_error:
            first = _one_line(exc.ngrok_error.split("\\n")[0].split("\n")[0])
            detail = clean(first).rstrip(".")
            if code in _AUTH_ERROR_CODES:
                return TunnelError(f"ngrok rejected the auth token {masked} ({code}): {detail}. "
                                   f"Check the token at {_DASHBOARD_TOKEN_URL}", ngrok_error_code=code)
            suffix = f" ({code})" if code else ""
            return TunnelError(f"the ngrok agent failed to start{suffix}: {detail}", ngrok_error_code=code)
        last = [log.line for log in exc.ngrok_logs if log.line][-1:]
        hint = f"; last output: {clean(last[0])}" if last else "; it printed nothing"
        return TunnelError(f"the ngrok agent at {path} did not come up within {startup_timeout:g}s or "
                           f"exited{hint}")
    if isinstance(exc, PyngrokError):
        return TunnelError(f"ngrok error: {clean(str(exc))}")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        return TunnelError(f"could not run ngrok at {path}: {clean(reason)}; check the file or set "
                           f"{ENV_NGROK_PATH}")
    return TunnelError(f"unexpected error opening the ngrok tunnel: {clean(str(exc))}")


def _upstream_url(host: str, local_port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{local_port}"


def open_tunnel(
    local_port: int,
    auth_token: str,
    *,
    ngrok_path: str | None = None,
    config_dir: str | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 15.0,
    allow_download: bool = True,
) -> Tunnel:
    """Open an https tunnel forwarding to ``http://{host}:{local_port}``. Blocking.

    :param ngrok_path: ngrok executable; default ``$STRIPE_SYNC_NGROK_PATH``, then ``ngrok`` on PATH,
        then pyngrok's install location (downloaded there if missing and ``allow_download``).
    :param config_dir: directory for the private ``ngrok.yml``; default a temporary one removed on close.
    :raises TunnelError: with an operator-facing message; the token appears masked only.
    """
    token = (auth_token or "").strip()
    if not token:
        raise TunnelError(f"no ngrok auth token is configured (got {mask_token(token)}): copy yours "
                          f"from {_DASHBOARD_TOKEN_URL}")
    if isinstance(local_port, bool) or not isinstance(local_port, int) or not 0 < local_port < 65536:
        raise TunnelError(f"invalid local port {local_port!r}: expected 1-65535")

    path = _resolve_ngrok_path(ngrok_path, allow_download)
    upstream = _upstream_url(host, local_port)
    _hold_secret(token)
    temp_dir: str | None = None
    registered = False
    try:
        try:
            config_path, temp_dir = _private_config(config_dir)
        except OSError as exc:
            raise TunnelError(f"cannot create the private ngrok config in {config_dir or 'a temp dir'}: "
                              f"{exc.strerror or exc}") from None
        pyngrok_config = conf.PyngrokConfig(
            ngrok_path=path,
            config_path=config_path,
            auth_token=token,
            startup_timeout=startup_timeout,  # type: ignore[arg-type]  # used as seconds, float is fine
            monitor_thread=True,
        )
        name = f"stripe-sync-{local_port}-{uuid.uuid4().hex[:8]}"

        with _agents_lock:
            agent = _agents.get(path)
            running = process.is_process_running(path)
            if agent is not None and not running:
                del _agents[path]  # died on its own
                agent = None
            if running and agent is None:
                agent = _agents[path] = _Agent(token=None, owned=False)
            if agent is not None and agent.token is not None and agent.token != token:
                raise TunnelError(f"an ngrok agent for {path} is already running with another auth token; "
                                  f"close its tunnel first")
            started_here = agent is None

            watchdog = _StartupWatchdog(path, startup_timeout) if started_here else None
            try:
                ngrok_tunnel = ngrok.connect(addr=upstream, proto="http", name=name,
                                             pyngrok_config=pyngrok_config)
                ngrok_process = ngrok.get_ngrok_process(pyngrok_config)
            except (PyngrokError, OSError) as exc:
                if started_here:
                    _stop_agent(path, pyngrok_config)
                elif agent is not None and agent.users == 0:
                    _agents.pop(path, None)
                raise _translate(exc, token, path, startup_timeout) from None
            finally:
                if watchdog is not None:
                    watchdog.cancel()

            if agent is None:
                agent = _agents[path] = _Agent(token=token, owned=True)
            agent.users += 1
            registered = True
            handle = _Handle(ngrok_path=path, pyngrok_config=pyngrok_config, token=token, temp_dir=temp_dir)
            tunnel = Tunnel(
                public_url=str(ngrok_tunnel.public_url),
                local_port=local_port,
                upstream_url=upstream,
                api_url=ngrok_process.api_url,
                agent_pid=ngrok_process.proc.pid,
                _handle=handle,
            )

        if not tunnel.public_url.startswith("https://"):
            url = tunnel.public_url
            tunnel.close()
            raise TunnelError(f"ngrok returned a non-https public URL ({url}); refusing to use it")
        logger.info("ngrok tunnel %s -> %s (agent pid %s)", tunnel.public_url, upstream, tunnel.agent_pid)
        return tunnel
    except BaseException:
        if not registered:
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)
            _release_secret(token)
        raise


def _debug_state() -> dict[str, Any]:
    """Snapshot of the shared agents (for tests and diagnostics)."""
    with _agents_lock:
        return {path: {"owned": a.owned, "users": a.users} for path, a in _agents.items()}
