"""Filters on third-party loggers, installed while the engine needs them and removed afterwards.

The engine is a library: importing it changes nothing in the host application's logging. A filter is
attached when the first user opens (an engine, a tunnel) and detached when the last one closes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from .masking import mask_secrets_in


class ScopedLogFilter:
    """One filter (and optionally a `NullHandler`) on named loggers, reference-counted."""

    def __init__(self, log_filter: logging.Filter, logger_names: Sequence[str], *,
                 quiet_loggers: Sequence[str] = ()) -> None:
        self.filter = log_filter
        self.logger_names = tuple(logger_names)
        self.quiet_loggers = tuple(quiet_loggers)
        """Loggers given a `NullHandler`, so that Python's last-resort handler does not print their
        records on stderr (under a console) when the host configured no handler."""
        self._handler = logging.NullHandler()
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                for name in self.logger_names:
                    logging.getLogger(name).addFilter(self.filter)
                for name in self.quiet_loggers:
                    logging.getLogger(name).addHandler(self._handler)

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                for name in self.logger_names:
                    logging.getLogger(name).removeFilter(self.filter)
                for name in self.quiet_loggers:
                    logging.getLogger(name).removeHandler(self._handler)


class MaskStripeSecrets(logging.Filter):
    """The SDK logs whole response bodies at DEBUG, among them a new endpoint's signing secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "whsec_" in record.msg:
            record.msg = mask_secrets_in(record.msg)
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "whsec_" in a for a in record.args):
            record.args = tuple(mask_secrets_in(a) if isinstance(a, str) else a for a in record.args)
        return True


STRIPE_SDK_SECRETS = ScopedLogFilter(MaskStripeSecrets(), ["stripe"])
"""Held by every open `StripeSync`."""
