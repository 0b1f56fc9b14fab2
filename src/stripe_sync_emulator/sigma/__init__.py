"""Stripe Sigma on the emulator: the 187 reporting tables (``schema``) filled from the account's
objects (``reporting``, ``store``), Trino SQL run on SQLite (``sql``), query runs and their result
files (``service``, ``routes``)."""

from __future__ import annotations

from .service import Sigma, SigmaSettings

__all__ = ["Sigma", "SigmaSettings"]
