"""Stripe Sigma: reporting tables copied into the `sigma` schema through Stripe's query-runs API.

`tables` reads the frozen table list (the one the migration created the tables from), `query` writes
the keyset queries, `client` runs them (create, poll, download the CSV), `page` parses and types a
result page, `worker` lands pages through the backfill's runs and chunks.
"""

from .tables import SIGMA, SIGMA_PREFIX, SigmaTable, is_sigma_object, sigma_objects, sigma_table

__all__ = ["SIGMA", "SIGMA_PREFIX", "SigmaTable", "is_sigma_object", "sigma_objects", "sigma_table"]
