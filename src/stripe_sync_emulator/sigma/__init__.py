"""Stripe Sigma on the emulator: the 187 reporting tables (``schema``) filled from the account's
objects (``reporting``, ``store``), Trino SQL run on SQLite (``sql``), query runs and their result
files (``service``, ``routes``). Only ``routes`` loads with the app; the rest on the first query
(``EmulatorCore.sigma``)."""
