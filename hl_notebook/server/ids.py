"""Identifier shapes of the v4 API: ``prefix_`` + 21 alphanumerics (spec §9).

Why: SDKs and users recognise objects by prefix (``pr_``, ``config_``, ``data_``…), so ours match.
"""
from __future__ import annotations

import functools
import hashlib
import secrets
import string

ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 21


_UNBIASED = 256 - 256 % len(ALPHABET)  # random bytes below this map evenly onto ALPHABET


def new_id(prefix: str) -> str:
    """A fresh random id such as ``data_Xb3…`` (21 characters after the underscore).

    One ``os.urandom`` read per id (``secrets.choice`` per character made 21, ~20 µs an id); bytes
    at or above ``_UNBIASED`` are dropped, so every character stays uniform over ``ALPHABET``.
    """
    chars: list[str] = []
    while len(chars) < ID_LENGTH:
        chars += [ALPHABET[b % len(ALPHABET)] for b in secrets.token_bytes(ID_LENGTH + 8) if b < _UNBIASED]
    return f"{prefix}_" + "".join(chars[:ID_LENGTH])


@functools.lru_cache(maxsize=1024)
def stable_id(prefix: str, key: str) -> str:
    """An id derived from ``key``, so concurrent registrations of the same thing agree on it.

    Cached: a sweep derives its config's id from the same parameters on every call."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest(), "big")
    chars = []
    for _ in range(ID_LENGTH):
        number, rest = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[rest])
    return f"{prefix}_" + "".join(chars)
