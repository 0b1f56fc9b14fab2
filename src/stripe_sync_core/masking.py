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


_URL_USERINFO_PASSWORD = re.compile(r"^([a-z0-9+]+://[^:/@]*):[^@]*@", re.IGNORECASE)
_URL_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
# key=value connection strings (`host=db password='a b' dbname=app`): a value is quoted (with
# backslash escapes) or runs to the next space.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']\S*|)", re.IGNORECASE)


def mask_database_url(url: str) -> str:
    """A PostgreSQL connection string in any form libpq accepts with its password replaced by `****`:
    a URL's `user:password@` and `?password=` parameter, a key=value string's `password=` (quoted or
    not)."""
    if re.match(r"^[a-z0-9+]+://", url, re.IGNORECASE):
        return _URL_QUERY_PASSWORD.sub(r"\1****", _URL_USERINFO_PASSWORD.sub(r"\1:****@", url))
    return _KEYWORD_PASSWORD.sub(r"\1****", url)


_SECRET_PATTERN = re.compile(r"\b((?:sk|rk)_(?:test|live)_|whsec_)([A-Za-z0-9]+)")


_URL_IN_TEXT = re.compile(r"\b(?:postgres(?:ql)?(?:\+psycopg)?)://\S+", re.IGNORECASE)


def mask_secrets_in(text: str) -> str:
    """Mask every Stripe key, webhook secret and database password found in free text (log lines,
    error messages): a database URL's and a key=value string's `password=`."""
    text = _SECRET_PATTERN.sub(lambda m: mask_secret(m.group(0)) or "", text)
    text = _URL_IN_TEXT.sub(lambda m: mask_database_url(m.group(0)), text)
    return _KEYWORD_PASSWORD.sub(r"\1****", text)


def mask_token(token: str | None) -> str:
    """An ngrok auth token: `********abcd` (its last four), nothing at all under 12 characters."""
    if not token:
        return "<empty>"
    if len(token) < 12:
        return "*" * 8
    return "*" * 8 + token[-KEEP:]


__all__ = ["mask_database_url", "mask_secret", "mask_secrets_in", "mask_token"]
