"""Secrets shown in part only: Stripe keys and webhook secrets, ngrok tokens, database passwords.

One module for every masker, used by logs, `--json` output, error messages and the console alike.
"""

from __future__ import annotations

import re

KEEP = 4
"""Characters of a secret ever shown: its last four."""


def mask_secret(secret: str | None) -> str | None:
    """`sk_test_...abcd`: the kind of secret and its last four characters, never more."""
    if not secret or "..." in secret or secret.endswith("****"):  # empty, or masked already
        return secret
    match = re.match(r"^((?:sk|rk|pk)_(?:test|live)_|whsec_|)", secret)
    prefix = match.group(1) if match else ""
    if len(secret) - len(prefix) <= 8:
        return f"{prefix}****"
    return f"{prefix}...{secret[-KEEP:]}"


def mask_database_url(url: str) -> str:
    """The URL with its password replaced by `****`."""
    return re.sub(r"^([a-z0-9+]+://[^:/@]*):[^@]*@", r"\1:****@", url)


_SECRET_PATTERN = re.compile(r"\b((?:sk|rk)_(?:test|live)_|whsec_)([A-Za-z0-9]+)")


def mask_secrets_in(text: str) -> str:
    """Mask every Stripe key or webhook secret found in free text (log lines, error messages)."""
    return _SECRET_PATTERN.sub(lambda m: mask_secret(m.group(0)) or "", text)


def mask_token(token: str | None) -> str:
    """An ngrok auth token: `********abcd` (its last four), nothing at all under 12 characters."""
    if not token:
        return "<empty>"
    if len(token) < 12:
        return "*" * 8
    return "*" * 8 + token[-KEEP:]


__all__ = ["mask_database_url", "mask_secret", "mask_secrets_in", "mask_token"]
