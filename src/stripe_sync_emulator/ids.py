"""Stripe-looking ids that encode a row number, plus a fast deterministic hash.

An id is ``prefix + body``; the body carries the row's sequence number in fixed-width base62
(ASCII-ordered alphabet, so ids of one type sort like their sequence numbers, which is how list
ties on ``created`` are broken) and a few check characters derived from the seed, the account and
the type, so an id from another seed or account does not resolve. Nothing is stored per id.
"""

from __future__ import annotations

import hashlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def h(ns: int, i: int, salt: int = 0) -> int:
    """Deterministic pseudo-random 64-bit value for (namespace, row, salt)."""
    return mix64(ns ^ mix64(i * 0x100000001B3 + salt * 0x9E3779B1))


def stable_hash(*parts: object) -> int:
    """64-bit hash of strings/ints that is stable across processes (unlike ``hash()``)."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # 3844 two-character digits
_P2 = 62 * 62


def b62(n: int, width: int) -> str:
    """Fixed-width base62 (most significant first); raises if ``n`` does not fit."""
    out = []
    for _ in range(width // 2):
        n, r = divmod(n, _P2)
        out.append(_PAIRS[r])
    if width % 2:
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    if n:
        raise OverflowError("value does not fit in base62 width")
    out.reverse()
    return "".join(out)


def b62_decode(s: str) -> int | None:
    n = 0
    for c in s:
        v = _INDEX.get(c)
        if v is None:
            return None
        n = n * 62 + v
    return n


def b62_hash(x: int, width: int) -> str:
    """``width`` base62 characters taken from a 64-bit hash (may wrap; only for looks/checks)."""
    if width <= 10:  # 62**10 < 2**64: one fixed-width conversion
        return b62(x % (62**width), width)
    out = []
    for _ in range(width):
        x, r = divmod(x, 62)
        out.append(ALPHABET[r])
        if x == 0:
            x = mix64(r + 1)
    return "".join(out)


SEQ_WIDTH = 7  # 62**7 ≈ 3.5e12 rows per type, far beyond need


class IdCodec:
    """Encodes/decodes the ids of one type in one account.

    Styles: ``short`` (14-char body like ``cus_QXg1o8vcGmoR32``), ``long`` (24-char body like
    ``price_1PgafmB7WZ01zgkW6dKueIc5``, embedding the account tag as Stripe does), ``feat``
    (``feat_test_`` + 28), ``checkout`` (``cs_test_a1`` + 56), ``coupon`` (bare 12 chars).
    """

    def __init__(self, prefix: str, style: str, ns: int, account_tag: str) -> None:
        self.prefix = prefix
        self.style = style
        self.ns = ns
        self.tag = account_tag
        if style == "short":
            self._lead, self._check = "", 7
        elif style == "long":
            self._lead, self._check = "1", 6
        elif style == "feat":
            self._lead, self._check = "61", 9
        elif style == "checkout":
            self._lead, self._check = "a1", 37
        elif style == "coupon":
            self._lead, self._check = "", 5
        else:
            raise ValueError(style)
        self._uses_tag = style in ("long", "feat", "checkout")
        self.body_len = len(self._lead) + SEQ_WIDTH + (len(self.tag) if self._uses_tag else 0) + self._check
        # A per-type offset keeps the sequence digits from starting with a run of zeros (ids then
        # look random like Stripe's) while still sorting like the sequence numbers.
        self._offset = (10 + ns % 40) * 62**6 + (ns >> 8) % 62**6
        self._head = prefix + self._lead
        self._mid = self.tag if self._uses_tag else ""
        # Hot rows (prices, products, customers referenced from many objects) are encoded over and
        # over while rendering pages; a small bounded cache avoids most of that work.
        self._cache: dict[int, str] = {}

    def encode(self, seq: int) -> str:
        cached = self._cache.get(seq)
        if cached is not None:
            return cached
        check = b62_hash(mix64((self.ns + seq * 0x9E3779B97F4A7C15) & MASK64), self._check)
        ident = f"{self._head}{b62(seq + self._offset, SEQ_WIDTH)}{self._mid}{check}"
        if len(self._cache) >= 50_000:
            self._cache.clear()
        self._cache[seq] = ident
        return ident

    def decode(self, ident: str) -> int | None:
        """Sequence number of a well-formed id of this codec, else None."""
        if not ident.startswith(self.prefix) or len(ident) != len(self.prefix) + self.body_len:
            return None
        body = ident[len(self.prefix):]
        if not body.startswith(self._lead):
            return None
        start = len(self._lead)
        raw = b62_decode(body[start:start + SEQ_WIDTH])
        if raw is None or raw < self._offset:
            return None
        seq = raw - self._offset
        if self.encode(seq) != ident:
            return None
        return seq
