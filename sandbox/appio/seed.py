"""Synthetic citizens of the twin: valid fiscal codes (check letter included), none of a real person.

Every valid fiscal code has a profile decided by a stable hash, so a campaign to thousands of
citizens needs no seeding: about 5% are not on IO (404), 5% have blocked the sender
(`sender_allowed: false`), 5% prefer English. The lists below name a few of each for tests.
"""

from __future__ import annotations

import hashlib
import string

from stdnum.it import codicefiscale

_MONTHS = "ABCDEHLMPRST"
NOT_ON_IO_BUCKET, NOT_ALLOWED_BUCKET, ENGLISH_BUCKET = 0, 1, 2


def synthetic_fiscal_code(n: int) -> str:
    """The n-th synthetic fiscal code: letters from n, born 19xx in Cremona (D150)."""
    letters = ""
    value = n
    for _ in range(6):
        value, rest = divmod(value, 26)
        letters += string.ascii_uppercase[rest]
    year = f"{40 + n % 60:02d}"
    month = _MONTHS[(n // 7) % 12]
    day = 1 + (n // 3) % 28 + (40 if n % 2 else 0)
    body = f"{letters[::-1]}{year}{month}{day:02d}D150"
    return body + codicefiscale.calc_check_digit(body)


def bucket(fiscal_code: str) -> int:
    return int.from_bytes(hashlib.sha256(fiscal_code.encode()).digest()[:4], "big") % 20


def _first(kind: int, count: int = 5) -> tuple[str, ...]:
    found: list[str] = []
    n = 0
    while len(found) < count:
        code = synthetic_fiscal_code(n)
        if bucket(code) == kind:
            found.append(code)
        n += 1
    return tuple(found)


NOT_ON_IO = _first(NOT_ON_IO_BUCKET)
NOT_ALLOWED = _first(NOT_ALLOWED_BUCKET)
ENGLISH = _first(ENGLISH_BUCKET)
ON_IO = _first(7)


def profile_for(fiscal_code: str) -> dict[str, object] | None:
    """The LimitedProfile the twin answers for a citizen, or None (not on IO)."""
    kind = bucket(fiscal_code)
    if kind == NOT_ON_IO_BUCKET:
        return None
    return {"sender_allowed": kind != NOT_ALLOWED_BUCKET,
            "preferred_languages": ["en_GB", "it_IT"] if kind == ENGLISH_BUCKET else ["it_IT"]}


def citizens(count: int) -> list[str]:
    """`count` distinct synthetic fiscal codes (a campaign's recipients)."""
    return [synthetic_fiscal_code(n) for n in range(count)]
