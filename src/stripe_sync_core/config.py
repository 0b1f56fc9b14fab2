"""`SyncConfig`: the one settings object shared by the library, the console and the headless CLI.

Names follow the TypeScript Stripe Sync Engine's options in snake_case. Precedence, highest first:
command-line flag, environment variable, TOML config file, default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from .errors import InvalidInput
from .masking import mask_database_url, mask_secret

APP_NAME = "stripe-sync-tui"

# Environment variables, by SyncConfig field.
ENVIRONMENT: dict[str, str] = {
    "database_url": "DATABASE_URL",
    "stripe_secret_key": "STRIPE_API_KEY",
    "stripe_webhook_secret": "STRIPE_WEBHOOK_SECRET",
    "stripe_api_base": "STRIPE_API_BASE",
    "ngrok_auth_token": "NGROK_AUTHTOKEN",
    "enable_sigma": "ENABLE_SIGMA",
}

# libpq's own variables: with no DATABASE_URL, any of these means "that server", not the embedded one
# (a password from PGPASSWORD or ~/.pgpass, as libpq finds it).
LIBPQ_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSERVICEFILE")

SECRET_FIELDS = ("stripe_secret_key", "stripe_webhook_secret", "ngrok_auth_token")

# Every setting at once, as JSON: how a program hands its exact settings to a child process of the
# engine (the console's backfill workers). Read after the config file, before the variables above.
SETTINGS_VARIABLE = "STRIPE_SYNC_SETTINGS"


class ConfigError(InvalidInput, ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class SyncConfig:
    """Settings of a `StripeSync` engine.

    Attributes mirror the TypeScript engine's configuration table (poolConfig becomes `database_url`
    and `pool_max_size`).
    """

    database_url: str | None = None
    """PostgreSQL URL; None means the embedded server in the user's data directory."""
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_version: str | None = None
    """Stripe API version sent with each request; None uses the SDK's pinned version."""
    stripe_api_base: str | None = None
    """Base URL of the Stripe API; point it at the local emulator in tests and the demo."""
    stripe_account_id: str | None = None
    """The key's own account id, for restricted keys that cannot read `/v1/account`."""
    max_retries: int = 5
    initial_retry_delay_ms: int = 1000
    max_retry_delay_ms: int = 60000
    request_timeout_seconds: float = 30.0
    """How long one Stripe request may take before it counts as a network failure (and is retried)."""
    enable_sigma: bool = False
    """Copy Stripe Sigma's reporting tables (schema `sigma`) too: `backfill all` includes them (live keys only)."""
    sigma_page_size: int = 10_000
    """Rows per Sigma query (one keyset page, one query run, one CSV file)."""
    sigma_files_base: str | None = None
    """Where Sigma's result files are downloaded from; None: https://files.stripe.com, or `stripe_api_base` when set."""
    sigma_window_hours: float = 48.0
    """Incremental Sigma runs re-read this much before the last high-water mark (Sigma data lands hours late)."""
    auto_expand_lists: bool = False
    backfill_related_entities: bool = False
    revalidate_objects_via_stripe_api: tuple[str, ...] = ()
    max_requests_per_second: float | None = None
    """Request budget shared by all calls; None follows Stripe's limits (100/s live, 25/s test), 0 is unlimited."""
    ngrok_auth_token: str | None = None
    listener_port: int = 8787
    """Port of the embedded webhook listener (bound to 127.0.0.1 unless told otherwise)."""
    pool_max_size: int = 10
    prepared_statements: bool = True
    """Let connections that reach PostgreSQL itself prepare the statements they repeat (a pooler's never
    do: it is told apart by its cancel keys). False: never, for a pooler that passes on a server's own
    cancel key while it switches server connections between transactions."""
    event_log_retention_days: int = 30
    logger: logging.Logger | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError("max_retries must be 0 or more")
        if not isinstance(self.prepared_statements, bool):
            raise ConfigError(f"prepared_statements must be true or false, not {self.prepared_statements!r}")
        if not self.request_timeout_seconds > 0:
            raise ConfigError("request_timeout_seconds must be more than 0")
        if self.initial_retry_delay_ms < 0 or self.max_retry_delay_ms < self.initial_retry_delay_ms:
            raise ConfigError("retry delays must satisfy 0 <= initial_retry_delay_ms <= max_retry_delay_ms")
        if self.stripe_secret_key is not None and not re.match(r"^(sk|rk)_(test|live)_\S+$",
                                                                self.stripe_secret_key):
            raise ConfigError(
                f"stripe_secret_key {mask_secret(self.stripe_secret_key)} is not a Stripe secret key "
                "(sk_test_..., sk_live_..., rk_test_... or rk_live_...)"
            )
        if isinstance(self.enable_sigma, str):  # from the environment (ENABLE_SIGMA=true)
            flag = self.enable_sigma.strip().lower()
            if flag not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ConfigError(f"enable_sigma / ENABLE_SIGMA must be true or false, not {self.enable_sigma!r}")
            object.__setattr__(self, "enable_sigma", flag in ("1", "true", "yes", "on"))
        if not isinstance(self.sigma_page_size, int) or not 1 <= self.sigma_page_size <= 1_000_000:
            raise ConfigError(f"sigma_page_size must be a whole number from 1 to 1000000, not {self.sigma_page_size!r}")
        if not self.sigma_window_hours >= 0:
            raise ConfigError("sigma_window_hours must be 0 or more")
        if isinstance(self.revalidate_objects_via_stripe_api, list):
            object.__setattr__(self, "revalidate_objects_via_stripe_api",
                               tuple(self.revalidate_objects_via_stripe_api))

    @property
    def livemode(self) -> bool | None:
        """True for a live key, False for a test key, None without a key."""
        if not self.stripe_secret_key:
            return None
        return "_live_" in self.stripe_secret_key

    @property
    def log(self) -> logging.Logger:
        return self.logger or logging.getLogger("stripe_sync_core")

    def with_overrides(self, **overrides: Any) -> SyncConfig:
        """A copy with the given non-None values replaced."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def child_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a child process that loads exactly these settings: `base` (default: this
        process's environment) without the single-setting variables, plus all settings in one variable.
        Secrets travel in the environment, as `STRIPE_API_KEY` would, never in arguments or files."""
        environment = {k: v for k, v in (os.environ if base is None else base).items()
                       if k not in ENVIRONMENT.values()}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "logger"}
        environment[SETTINGS_VARIABLE] = json.dumps(values)
        return environment

    def masked(self) -> dict[str, Any]:
        """The settings as a dict fit to print: secrets and the database password masked."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "logger":
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = mask_secret(value)
            elif f.name == "database_url":
                value = mask_database_url(value) if value else "embedded"
            shown[f.name] = value
        return shown


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_data_dir() -> Path:
    return Path(os.environ.get("STRIPE_SYNC_DATA_DIR") or platformdirs.user_data_dir(APP_NAME))


def load_config(flags: dict[str, Any] | None = None, *, config_path: Path | None = None,
                environ: dict[str, str] | None = None) -> SyncConfig:
    """Build the settings: flags over environment over TOML file over defaults."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    known = {f.name for f in fields(SyncConfig)} - {"logger"}

    path = config_path or Path(environ.get("STRIPE_SYNC_CONFIG") or default_config_path())
    if path.exists():
        try:
            file_values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
        unknown = set(file_values) - known
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
        values.update(file_values)

    if environ.get(SETTINGS_VARIABLE):
        try:
            given = json.loads(environ[SETTINGS_VARIABLE])
        except ValueError as error:
            raise ConfigError(f"{SETTINGS_VARIABLE} is not JSON: {error}") from None
        if not isinstance(given, dict) or set(given) - known:
            raise ConfigError(f"{SETTINGS_VARIABLE} must be an object of settings "
                              f"(unknown: {', '.join(sorted(set(given) - known)) if isinstance(given, dict) else '-'})")
        values.update(given)

    for name, variable in ENVIRONMENT.items():
        if environ.get(variable):
            values[name] = environ[variable]

    for name, value in (flags or {}).items():
        if value is not None:
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = value
    if not values.get("database_url") and any(environ.get(v) for v in LIBPQ_VARIABLES):
        values["database_url"] = "postgresql://"  # every part from libpq's own variables, as psql does
    return SyncConfig(**values)
