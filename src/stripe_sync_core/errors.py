"""One error tree: every failure the engine reports on purpose is a `StripeSyncError`.

Four branches say what the caller can do about it; the CLI maps each to one exit code and the console
to one problem screen, by branch (`kind`), never by message text:

* `Refused`: the operation is refused in the current state (an open run, a claim taken over, a
  managed webhook that is not ours); nothing changed. Wait, cancel, or choose another action.
* `Unavailable`: a service does not answer (PostgreSQL, the embedded server, Stripe, the tunnel).
  Try again once it is back.
* `NotConfigured`: a setting or a step is missing (no Stripe key, the key may not read the account,
  the schema not migrated, the engine not open).
* `InvalidInput`: the input is wrong (a setting, an object type, a chunk size, a date, a webhook
  delivery). Fix it and retry.

Classes that other code catches by a built-in base (`ValueError` for webhook and config errors,
`KeyError` for an unknown object type) keep that base too.
"""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorKind = Literal["refused", "unavailable", "not_configured", "invalid_input", "failed"]


class StripeSyncError(Exception):
    """The root of every error the engine raises on purpose; `kind` names its branch."""

    branch: ClassVar[ErrorKind] = "failed"

    @property
    def kind(self) -> ErrorKind:
        return self.branch


class Refused(StripeSyncError):
    """Refused in the current state; nothing changed."""

    branch: ClassVar[ErrorKind] = "refused"


class Unavailable(StripeSyncError):
    """A service the engine needs does not answer."""

    branch: ClassVar[ErrorKind] = "unavailable"


class NotConfigured(StripeSyncError):
    """A setting or a preparatory step is missing."""

    branch: ClassVar[ErrorKind] = "not_configured"


class InvalidInput(StripeSyncError):
    """The input (a setting, an argument, a delivery) is not valid."""

    branch: ClassVar[ErrorKind] = "invalid_input"


__all__ = ["ErrorKind", "InvalidInput", "NotConfigured", "Refused", "StripeSyncError", "Unavailable"]
